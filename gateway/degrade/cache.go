package degrade

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
)

// MaxCachedBody caps one response kept for the cache fallback.
const MaxCachedBody = 256 << 10

// defaultCacheBytes bounds the bodies one route's cache holds.
const defaultCacheBytes = 8 << 20

// maxVariants bounds the Vary variants kept per method and URL.
const maxVariants = 8

// Response is a remembered good response for the cache fallback.
type Response struct {
	Status int
	Header http.Header
	Body   []byte

	vary   []string // canonical request header names the response varies on
	values []string // the request's values of those headers, joined per name
}

// ResponseCache keeps good responses for the cache fallback, keyed like an HTTP
// cache: by method and URL, then by the request headers the response's Vary
// names. A response that belongs to one user (Set-Cookie, Cache-Control
// private or no-store, a request with Authorization, or with a Cookie unless
// the response is public) is never kept, and
// only GET and HEAD are ever answered from it. It holds at most MaxBytes of
// bodies and evicts the oldest URLs first.
type ResponseCache struct {
	mu       sync.Mutex
	entries  map[string][]*Response // primary key → variants, newest first
	order    []string               // primary keys in insertion order
	bytes    int64
	maxBytes int64
}

// NewResponseCache returns a cache holding at most maxBytes of bodies (0: 8 MiB).
func NewResponseCache(maxBytes int64) *ResponseCache {
	if maxBytes <= 0 {
		maxBytes = defaultCacheBytes
	}
	return &ResponseCache{entries: map[string][]*Response{}, maxBytes: maxBytes}
}

// Storable reports whether the response to req with this status and header
// may be kept at all, before its body is read.
//
// A response to a request with a Cookie is kept only when it says
// Cache-Control: public: a page personalised by cookie rarely says Vary:
// Cookie, and keeping it would serve one user's page to the next (shared
// caches such as Varnish bypass such requests by default).
func Storable(req *http.Request, status int, h http.Header) bool {
	if req.Method != http.MethodGet || status != http.StatusOK || req.Header.Get("Authorization") != "" ||
		len(h.Values("Set-Cookie")) > 0 {
		return false
	}
	public := false
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			d, _, _ = strings.Cut(strings.TrimSpace(d), "=") // private="Set-Cookie" is private too
			if strings.EqualFold(d, "private") || strings.EqualFold(d, "no-store") {
				return false
			}
			public = public || strings.EqualFold(d, "public")
		}
	}
	if req.Header.Get("Cookie") != "" && !public {
		return false
	}
	for _, name := range varyNames(h) {
		if name == "*" {
			return false
		}
	}
	return true
}

// primaryKey is the cache key before Vary: GET and HEAD share the GET entry.
func primaryKey(req *http.Request) string {
	return http.MethodGet + " " + req.Host + req.URL.RequestURI()
}

func varyNames(h http.Header) []string {
	var names []string
	for _, v := range h.Values("Vary") {
		for n := range strings.SplitSeq(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, textproto.CanonicalMIMEHeaderKey(n))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func varyValues(req *http.Request, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.Join(req.Header.Values(n), ",")
	}
	return out
}

// Put keeps the response to req; it ignores what Storable refuses and
// bodies over MaxCachedBody.
func (c *ResponseCache) Put(req *http.Request, status int, h http.Header, body []byte) {
	if !Storable(req, status, h) || len(body) > MaxCachedBody {
		return
	}
	r := &Response{Status: status, Header: h.Clone(), Body: body, vary: varyNames(h)}
	r.values = varyValues(req, r.vary)
	key := primaryKey(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	variants, known := c.entries[key]
	kept := []*Response{r}
	for _, v := range variants {
		if slices.Equal(v.vary, r.vary) && slices.Equal(v.values, r.values) || len(kept) == maxVariants {
			c.bytes -= int64(len(v.Body))
			continue
		}
		kept = append(kept, v)
	}
	c.entries[key] = kept
	c.bytes += int64(len(body))
	if !known {
		c.order = append(c.order, key)
	}
	for c.bytes > c.maxBytes && len(c.order) > 1 {
		oldest := c.order[0]
		c.order = c.order[1:]
		for _, v := range c.entries[oldest] {
			c.bytes -= int64(len(v.Body))
		}
		delete(c.entries, oldest)
	}
}

// Get returns the response kept for req, or nil. Only GET and HEAD requests
// without Authorization are answered.
func (c *ResponseCache) Get(req *http.Request) *Response {
	if (req.Method != http.MethodGet && req.Method != http.MethodHead) || req.Header.Get("Authorization") != "" {
		return nil
	}
	key := primaryKey(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.entries[key] {
		if slices.Equal(v.values, varyValues(req, v.vary)) {
			return v
		}
	}
	return nil
}

// Len is the number of responses kept.
func (c *ResponseCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.entries {
		n += len(v)
	}
	return n
}
