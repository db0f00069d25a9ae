package agentsql

import (
	"strings"
	"unicode/utf8"
)

// MaxOperationLen bounds a normalized statement: it names a span and a metric series.
const MaxOperationLen = 256

// Normalize turns a SQL statement into an operation name: literals become "?", so the name
// holds no customer data and statements differing only in their values share one metric
// series. String literals ('abc', with ” and backslash escapes; E'..', X'..' and $$..$$
// forms), numbers (42, -1.5e3, 0xFF) and comments go; placeholders (?, ?1, $1, :name, @p)
// and quoted identifiers ("t1", `t1`) stay; lists of values after IN collapse to "IN (?)";
// whitespace collapses to one space; the result is cut at MaxOperationLen bytes.
//
// An unterminated literal swallows the rest of the statement: showing less is safer than
// leaking a value.
func Normalize(q string) string {
	b := make([]byte, 0, min(len(q), 2*MaxOperationLen))
	space := false // whitespace seen since the last byte written
	put := func(c byte) {
		if space && len(b) > 0 {
			b = append(b, ' ')
		}
		space = false
		b = append(b, c)
	}
	afterIdent := func() bool { return !space && len(b) > 0 && identByte(b[len(b)-1]) }
	// The whole statement is scanned: cutting first would leave a long IN list uncollapsed.
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			space = true
			i++
		case strings.HasPrefix(q[i:], "--"):
			if j := strings.IndexByte(q[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(q)
			}
			space = true
		case strings.HasPrefix(q[i:], "/*"):
			if j := strings.Index(q[i+2:], "*/"); j >= 0 {
				i += j + 4
			} else {
				i = len(q)
			}
			space = true
		case c == '\'':
			if !space && len(b) > 0 && strings.IndexByte("eEnNxXbBuU", b[len(b)-1]) >= 0 && (len(b) == 1 || !identByte(b[len(b)-2])) {
				b = b[:len(b)-1] // a literal's prefix (E'..', X'..'): part of the literal
			}
			put('?')
			i = skipString(q, i)
		case c == '"' || c == '`':
			j := skipQuoted(q, i, c)
			for k := i; k < j; k++ {
				put(q[k])
			}
			i = j
		case c == '$' && !afterIdent():
			if j := skipDollarQuoted(q, i); j > i {
				put('?')
				i = j
			} else {
				put(c)
				i++
			}
		case isDigit(c) && !afterIdent(), c == '.' && i+1 < len(q) && isDigit(q[i+1]) && !afterIdent():
			put('?')
			i = skipNumber(q, i)
		default:
			put(c)
			i++
		}
	}
	b = collapseIn(b)
	if len(b) > MaxOperationLen {
		n := MaxOperationLen
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		b = b[:n]
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// identByte: a digit after one of these belongs to a name or a placeholder (t1, $1, ?2, @p1).
// Bytes of multi-byte UTF-8 characters count as letters.
func identByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '_' || c == '$' || c == '?' ||
		c == ':' || c == '@' || c == '#' || c >= 0x80
}

// skipString returns the index after the literal opening at q[i] == '\”.
func skipString(q string, i int) int {
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\': // MySQL-style escape; in standard SQL a backslash is plain, and then this
			j++ //   only swallows more of the statement, never leaks a value
		case '\'':
			if j+1 < len(q) && q[j+1] == '\'' {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// skipQuoted returns the index after the identifier quoted by quote ("" doubles it).
func skipQuoted(q string, i int, quote byte) int {
	for j := i + 1; j < len(q); j++ {
		if q[j] == quote {
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// skipDollarQuoted returns the index after a PostgreSQL dollar-quoted literal ($$..$$ or
// $tag$..$tag$) opening at q[i], or i when there is none ($1 is a placeholder).
func skipDollarQuoted(q string, i int) int {
	j := i + 1
	for j < len(q) && (q[j] == '_' || 'a' <= q[j] && q[j] <= 'z' || 'A' <= q[j] && q[j] <= 'Z' || j > i+1 && isDigit(q[j])) {
		j++
	}
	if j >= len(q) || q[j] != '$' {
		return i
	}
	tag := q[i : j+1]
	if k := strings.Index(q[j+1:], tag); k >= 0 {
		return j + 1 + k + len(tag)
	}
	return i
}

// skipNumber returns the index after the number at q[i]: 42, 1.5, .5, 1e-3, 0xFF.
func skipNumber(q string, i int) int {
	if q[i] == '0' && i+2 < len(q) && (q[i+1] == 'x' || q[i+1] == 'X') && isHex(q[i+2]) {
		j := i + 2
		for j < len(q) && isHex(q[j]) {
			j++
		}
		return j
	}
	j := i
	for j < len(q) && isDigit(q[j]) {
		j++
	}
	if j < len(q) && q[j] == '.' {
		j++
		for j < len(q) && isDigit(q[j]) {
			j++
		}
	}
	if j+1 < len(q) && (q[j] == 'e' || q[j] == 'E') {
		k := j + 1
		if q[k] == '+' || q[k] == '-' {
			k++
		}
		if k < len(q) && isDigit(q[k]) {
			for k < len(q) && isDigit(q[k]) {
				k++
			}
			j = k
		}
	}
	return j
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// collapseIn rewrites "IN (?, ?, $3)" as "IN (?)": the length of a value list says nothing
// about the statement and would make one series per length.
func collapseIn(b []byte) []byte {
	out := b[:0:0]
	for i := 0; i < len(b); {
		if end, ok := inList(b, i); ok {
			out = append(out, b[i:i+2]...)
			out = append(out, " (?)"...)
			i = end
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

// inList reports whether b[i:] starts with the word IN followed by a parenthesized list of
// placeholders only, and where that list ends.
func inList(b []byte, i int) (end int, ok bool) {
	if i+2 > len(b) || (b[i]|0x20) != 'i' || (b[i+1]|0x20) != 'n' || (i > 0 && identByte(b[i-1])) {
		return 0, false
	}
	j := i + 2
	if j < len(b) && b[j] == ' ' {
		j++
	}
	if j >= len(b) || b[j] != '(' {
		return 0, false
	}
	j++
	for items := 0; ; items++ {
		if j < len(b) && b[j] == ' ' {
			j++
		}
		if j < len(b) && b[j] == '-' { // a negative number: "-?"
			j++
		}
		if j >= len(b) || (b[j] != '?' && b[j] != '$' && b[j] != ':' && b[j] != '@') {
			return 0, false
		}
		j++
		for j < len(b) && identByte(b[j]) && b[j] != '?' {
			j++
		}
		if j < len(b) && b[j] == ' ' {
			j++
		}
		if j >= len(b) {
			return 0, false
		}
		switch b[j] {
		case ',':
			j++
		case ')':
			return j + 1, true
		default:
			return 0, false
		}
	}
}
