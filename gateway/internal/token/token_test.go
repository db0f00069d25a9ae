package token

import (
	"errors"
	"testing"
)

func TestCallbacksCarryTheirValue(t *testing.T) {
	var got []int64
	var errs []error
	p := New(func(v int64, err error) { got = append(got, v); errs = append(errs, err) })
	a, b := p.Get(1), p.Get(2)
	boom := errors.New("boom")
	b(boom)
	a(nil)
	c := p.Get(3) // may reuse a recycled token
	c(nil)
	if len(got) != 3 || got[0] != 2 || got[1] != 1 || got[2] != 3 || errs[0] != boom || errs[1] != nil {
		t.Fatalf("got %v %v", got, errs)
	}
}
