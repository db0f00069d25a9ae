package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// serve runs handler on addr until ctx ends, then shuts it down gracefully. A failure to
// serve cancels the daemon through fail. It returns the bound address (addr may use port 0).
func serve(ctx context.Context, name, addr string, handler http.Handler, fail context.CancelCauseFunc) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fail(fmt.Errorf("%s %w: %w", name, errFailed, err))
		}
	}()
	slog.Info(name+": listening", "addr", ln.Addr().String())
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}
	return ln.Addr().String(), stop, nil
}

// failure is why a daemon's ctx ended, or nil when it was a signal or a parent's cancel: a
// SIGTERM is a clean exit (status 0), a failed part of the daemon is not.
func failure(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), errFailed) {
		return context.Cause(ctx)
	}
	return nil
}

// errFailed marks the causes a daemon's parts report when they fail.
var errFailed = errors.New("failed")
