package spool

import "time"

// WithClock lets tests drive segment age with a fake clock.
func WithClock(c Config, now func() time.Time) Config {
	c.now = now
	return c
}
