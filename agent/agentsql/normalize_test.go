package agentsql_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mercury-apm/mercury/agent/agentsql"
)

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"SELECT * FROM t WHERE name = 'abc'", "SELECT * FROM t WHERE name = ?"},
		{"SELECT * FROM t WHERE id = 42 AND price > 1.5", "SELECT * FROM t WHERE id = ? AND price > ?"},
		{"select 1e10, -3, .5, 0xFF, 2E-3", "select ?, -?, ?, ?, ?"},
		{"SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?)"},
		{"SELECT * FROM t WHERE id in(?,?,?)", "SELECT * FROM t WHERE id in (?)"},
		{"SELECT * FROM t WHERE id IN ($1, $2) AND x IN (:a, @b, ?3, 'z', -1)", "SELECT * FROM t WHERE id IN (?) AND x IN (?)"},
		{"SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE v = 1)", "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE v = ?)"},
		{"SELECT * FROM t WHERE origin = 'x' AND join_id = 5", "SELECT * FROM t WHERE origin = ? AND join_id = ?"},
		{"  SELECT\n\t*\r\n  FROM   t  ", "SELECT * FROM t"},
		{"SELECT 'it''s', 'a\\'b' FROM t", "SELECT ?, ? FROM t"},
		{"SELECT 'unterminated, secret", "SELECT ?"},
		{"SELECT E'\\n', X'0A', N'name', x'ff'", "SELECT ?, ?, ?, ?"},
		{"SELECT $$ body 'with' 12 $$, $fn$ x $fn$ FROM t WHERE a = $1", "SELECT ?, ? FROM t WHERE a = $1"},
		{"SELECT t1.c2, \"Col 3\", `tab4` FROM t1", "SELECT t1.c2, \"Col 3\", `tab4` FROM t1"},
		{"SELECT \"a\"\"b 1\" FROM t", "SELECT \"a\"\"b 1\" FROM t"},
		{"INSERT INTO t (a, b) VALUES (?, ?)", "INSERT INTO t (a, b) VALUES (?, ?)"},
		{"INSERT INTO t (a, b) VALUES ('x', 2)", "INSERT INTO t (a, b) VALUES (?, ?)"},
		{"SELECT a -- the id 123\nFROM t /* user 'bob' 99 */ WHERE b = ?", "SELECT a FROM t WHERE b = ?"},
		{"SELECT a /* unterminated 123", "SELECT a"},
		{"UPDATE t SET v = v+1 WHERE k=?", "UPDATE t SET v = v+? WHERE k=?"},
		{"SELECT * FROM tin (1)", "SELECT * FROM tin (?)"},
		{"SELECT * FROM ünïcode1 WHERE x = 'ü'", "SELECT * FROM ünïcode1 WHERE x = ?"},
		{"", ""},
	}
	for _, c := range cases {
		if got := agentsql.Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestNormalizeBounds(t *testing.T) {
	long := "SELECT " + strings.Repeat("é, ", 200) + "x FROM t"
	got := agentsql.Normalize(long)
	if len(got) > agentsql.MaxOperationLen || !utf8.ValidString(got) || !strings.HasPrefix(got, "SELECT é, é") {
		t.Fatalf("len %d, valid %v: %q", len(got), utf8.ValidString(got), got)
	}
	// A huge IN list stays one name, whatever its length.
	in := func(n int) string {
		return "SELECT * FROM t WHERE id IN (" + strings.Repeat("1, ", n) + "2)"
	}
	if a, b := agentsql.Normalize(in(3)), agentsql.Normalize(in(5000)); a != b || a != "SELECT * FROM t WHERE id IN (?)" {
		t.Fatalf("IN lists: %q vs %q", a, b)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"SELECT 'a' FROM t WHERE id IN (1,2)", "$$x$$", "'", "x IN (", "-- c", "/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got := agentsql.Normalize(q)
		if len(got) > agentsql.MaxOperationLen {
			t.Fatalf("%d bytes", len(got))
		}
		if utf8.ValidString(q) && !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8 from valid input: %q", got)
		}
	})
}
