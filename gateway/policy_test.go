package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/mercury-apm/mercury/gateway/ratelimit"
	"github.com/mercury-apm/mercury/gateway/upstream"
)

func TestClassify(t *testing.T) {
	resp := func(code int, hdr ...string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		return r
	}
	connErr := errors.New("dial tcp: connection refused")
	timeout := errors.Join(connErr, context.DeadlineExceeded)
	refused := errRefused{ratelimit.ErrLimited}
	all, err := newRetryPolicy(RouteConfig{Local: UpstreamConfig{Instances: []string{"a", "b"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	narrow, _ := newRetryPolicy(RouteConfig{Retry: RouteRetry{OnStatus: []int{502, 429}, OnErrors: []string{RetryOnTimeout}}}, nil)
	cases := []struct {
		p    *retryPolicy
		resp *http.Response
		err  error
		want class
	}{
		{&all, resp(200), nil, classDone},
		{&all, resp(404), nil, classDone},
		{&all, resp(500), nil, classCrash},
		{&all, resp(501), nil, classDone},
		{&all, resp(503), nil, classCrash},
		{&all, resp(503, "Retry-After", "5"), nil, classOverload},
		{&all, resp(505), nil, classDone},
		{&all, resp(999), nil, classDone},
		{&all, nil, connErr, classCrash},
		{&all, nil, timeout, classTimeout},
		{&all, nil, context.Canceled, classDone},
		{&all, nil, refused, classRefused},
		{&all, nil, upstream.ErrNoHealthy, classRefused},
		{&narrow, resp(500), nil, classDone},
		{&narrow, resp(429), nil, classCrash},
		{&narrow, nil, connErr, classDone},
		{&narrow, nil, refused, classDone},
		{&narrow, nil, timeout, classTimeout},
	}
	for i, c := range cases {
		if got := c.p.classify(c.resp, c.err); got != c.want {
			t.Errorf("case %d (status %d, err %v): class %d, want %d", i, status(c.resp), c.err, got, c.want)
		}
	}
	if !all.local || narrow.local {
		t.Fatal("local retry needs two or more local instances")
	}
}
