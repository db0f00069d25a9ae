package deadline

import (
	"net/http"
	"testing"
	"time"
)

func TestFromHeader(t *testing.T) {
	cases := []struct {
		v    []string
		want time.Duration
		ok   bool
	}{
		{nil, 0, false},
		{[]string{"250"}, 250 * time.Millisecond, true},
		{[]string{"0"}, 0, true},
		{[]string{"-1"}, 0, false},
		{[]string{"1.5"}, 0, false},
		{[]string{"soon"}, 0, false},
		{[]string{""}, 0, false},
		{[]string{"99999999999999999999"}, 0, false},
		{[]string{"86400001"}, 0, false},
		{[]string{"86400000"}, 24 * time.Hour, true},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.v != nil {
			h[Header] = c.v
		}
		d, ok := FromHeader(h)
		if d != c.want || ok != c.ok {
			t.Errorf("FromHeader(%q) = %v, %v; want %v, %v", c.v, d, ok, c.want, c.ok)
		}
	}
}

func TestFormatRoundsDown(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", 999 * time.Microsecond: "0", 1500 * time.Microsecond: "1", 300 * time.Millisecond: "300", -time.Second: "0",
	} {
		if got := Format(d); got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
	}
}
