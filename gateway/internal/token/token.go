// Package token hands out done callbacks that carry one int64 (a start time,
// a breaker generation) without allocating a closure per request.
package token

import "sync"

// Pool recycles done callbacks. Each callback must be called exactly once:
// after the call it goes back to the pool and may be handed to another request.
type Pool struct {
	finish func(v int64, err error)
	p      sync.Pool
}

type tok struct {
	pool *Pool
	v    int64
	fn   func(error)
}

func (t *tok) done(err error) {
	p, v := t.pool, t.v
	p.p.Put(t)
	p.finish(v, err)
}

// New returns a pool whose callbacks call finish with their value.
func New(finish func(v int64, err error)) *Pool {
	p := &Pool{finish: finish}
	p.p.New = func() any {
		t := &tok{pool: p}
		t.fn = t.done
		return t
	}
	return p
}

// Get returns a done callback bound to v.
func (p *Pool) Get(v int64) func(error) {
	t := p.p.Get().(*tok)
	t.v = v
	return t.fn
}
