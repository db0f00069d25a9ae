// Package reliability holds the fault drill (`make reliability`): Mercury's daemons run as
// separate processes on loopback while a million spans pass through them and a seeded
// schedule kills them, stalls and fills the spool disk and makes the trace store refuse
// writes; at the end every span, metric point and alert is checked against what was sent.
// The drill is its test; this package has no other code.
package reliability
