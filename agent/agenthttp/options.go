// Package agenthttp traces net/http servers and clients with a Mercury agent, without touching
// business code: Middleware wraps a handler (server spans), Transport wraps a RoundTripper
// (client spans). Both speak W3C traceparent/tracestate, so a trace crosses services, and both
// follow the sampling decision taken where the trace started.
package agenthttp

import (
	"fmt"
	"net/http"
	"strings"
)

// Option configures Middleware or Transport. WithRouteFunc applies to both; WithBusinessKeys
// only to Middleware (the server reads the request), WithPeerName only to Transport.
type Option func(*config)

type config struct {
	route   func(*http.Request) string
	peer    string
	bizKeys []bizKey
}

func newConfig(opts []Option) *config {
	c := &config{}
	for _, o := range opts {
		o(c)
	}
	return c
}

// WithRouteFunc names a request's operation for routers other than http.ServeMux (which sets
// Request.Pattern by itself). It must return a route template such as "GET /order/{id}",
// never the raw path: operations are metric series, and raw paths would explode their number.
// An empty result falls back to the pattern, then to "HTTP <METHOD>".
func WithRouteFunc(f func(*http.Request) string) Option {
	return func(c *config) { c.route = f }
}

// WithPeerName names the service a Transport calls; without it the peer is the URL's host.
func WithPeerName(name string) Option {
	return func(c *config) { c.peer = name }
}

// Business keys are searchable: keep them short, and refuse what cannot be an identifier.
const (
	maxBizKeyName  = 64
	maxBizKeyValue = 128
	maxBizSource   = 128
)

type bizKey struct {
	key    string
	header bool   // else a query parameter
	name   string // header (canonical form) or parameter name
}

// WithBusinessKeys attaches business keys to server spans, read from the request:
// key → "query:<param>" or "header:<name>", e.g.
//
//	WithBusinessKeys(map[string]string{"order_id": "query:order_id", "user_id": "header:X-User-Id"})
//
// Key names are [A-Za-z0-9_.-]{1,64}. A value longer than 128 bytes, not valid UTF-8 or
// containing control characters is not recorded: it cannot be an id worth searching, and a
// client controls it. The middleware panics at construction on a malformed spec, like
// http.ServeMux does on a malformed pattern: it is a programming error, found at startup.
func WithBusinessKeys(keys map[string]string) Option {
	return func(c *config) {
		for k, spec := range keys {
			bk, err := parseBizKey(k, spec)
			if err != nil {
				panic(fmt.Sprintf("agenthttp: WithBusinessKeys: %v", err))
			}
			c.bizKeys = append(c.bizKeys, bk)
		}
	}
}

func parseBizKey(key, spec string) (bizKey, error) {
	if !validKeyName(key) {
		return bizKey{}, fmt.Errorf("key %q: want [A-Za-z0-9_.-]{1,%d}", key, maxBizKeyName)
	}
	src, name, _ := strings.Cut(spec, ":")
	if name == "" || len(name) > maxBizSource || strings.ContainsAny(name, " \t\r\n") {
		return bizKey{}, fmt.Errorf("key %q: source %q: want query:<param> or header:<name>", key, spec)
	}
	switch src {
	case "query":
		return bizKey{key: key, name: name}, nil
	case "header":
		return bizKey{key: key, header: true, name: http.CanonicalHeaderKey(name)}, nil
	}
	return bizKey{}, fmt.Errorf("key %q: source %q: want query:<param> or header:<name>", key, spec)
}

func validKeyName(s string) bool {
	if len(s) == 0 || len(s) > maxBizKeyName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// validKeyValue accepts what can be an identifier a person searches for.
func validKeyValue(v string) bool {
	if len(v) == 0 || len(v) > maxBizKeyValue {
		return false
	}
	for _, r := range v {
		if r == '\uFFFD' || r < 0x20 || r == 0x7f {
			return false // invalid UTF-8 decodes as U+FFFD
		}
	}
	return true
}

// method bounds the method's cardinality: a client may send any token as a method, and it ends
// up in an operation name when no route matched.
func method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	case "":
		return http.MethodGet // net/http: an empty client method means GET
	}
	return "_OTHER"
}

// fallbackOps avoids building "HTTP <METHOD>" per request.
var fallbackOps = func() map[string]string {
	m := map[string]string{}
	for _, v := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace, "_OTHER"} {
		m[v] = "HTTP " + v
	}
	return m
}()
