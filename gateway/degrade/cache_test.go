package degrade

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestStorable(t *testing.T) {
	cases := []struct {
		name   string
		method string
		status int
		req    http.Header
		resp   http.Header
		want   bool
	}{
		{"plain GET 200", "GET", 200, nil, nil, true},
		{"public max-age", "GET", 200, nil, http.Header{"Cache-Control": {"public, max-age=60"}}, true},
		{"POST", "POST", 200, nil, nil, false},
		{"HEAD is not stored", "HEAD", 200, nil, nil, false},
		{"404", "GET", 404, nil, nil, false},
		{"Set-Cookie", "GET", 200, nil, http.Header{"Set-Cookie": {"sid=bob"}}, false},
		{"private", "GET", 200, nil, http.Header{"Cache-Control": {"max-age=5, Private"}}, false},
		{"private with fields", "GET", 200, nil, http.Header{"Cache-Control": {`private="X-User"`}}, false},
		{"no-store", "GET", 200, nil, http.Header{"Cache-Control": {"no-store"}}, false},
		{"no-store in a second header", "GET", 200, nil, http.Header{"Cache-Control": {"public", "no-store"}}, false},
		{"Authorization", "GET", 200, http.Header{"Authorization": {"Bearer x"}}, nil, false},
		{"Vary *", "GET", 200, nil, http.Header{"Vary": {"Accept, *"}}, false},
		{"Cookie", "GET", 200, http.Header{"Cookie": {"sid=alice"}}, nil, false},
		{"Cookie, private", "GET", 200, http.Header{"Cookie": {"sid=alice"}}, http.Header{"Cache-Control": {"private"}}, false},
		{"Cookie, public", "GET", 200, http.Header{"Cookie": {"sid=alice"}}, http.Header{"Cache-Control": {"max-age=60, public"}}, true},
	}
	for _, c := range cases {
		req := httptest.NewRequest(c.method, "/a", nil)
		for k, v := range c.req {
			req.Header[k] = v
		}
		if got := Storable(req, c.status, c.resp); got != c.want {
			t.Errorf("%s: Storable = %v, want %v", c.name, got, c.want)
		}
	}
}

func get(path string, hdr ...string) *http.Request {
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

func TestCacheKeysByURLAndVary(t *testing.T) {
	c := NewResponseCache(0)
	c.Put(get("/u/alice"), 200, nil, []byte("alice"))
	c.Put(get("/u/bob"), 200, nil, []byte("bob"))
	c.Put(get("/u/bob?page=2"), 200, nil, []byte("bob 2"))
	vary := http.Header{"Vary": {"accept-language"}}
	c.Put(get("/greet", "Accept-Language", "de"), 200, vary, []byte("hallo"))
	c.Put(get("/greet", "Accept-Language", "fr"), 200, vary, []byte("salut"))
	c.Put(get("/greet", "Accept-Language", "de"), 200, vary, []byte("guten tag")) // replaces "hallo"
	for _, tc := range []struct {
		req  *http.Request
		want string // "" = nothing
	}{
		{get("/u/alice"), "alice"},
		{get("/u/bob"), "bob"},
		{get("/u/bob?page=2"), "bob 2"},
		{get("/u/carol"), ""},
		{get("/greet", "Accept-Language", "de"), "guten tag"},
		{get("/greet", "Accept-Language", "fr"), "salut"},
		{get("/greet"), ""},
		{httptest.NewRequest("HEAD", "/u/alice", nil), "alice"},
		{httptest.NewRequest("POST", "/u/alice", nil), ""},
		{get("/u/alice", "Authorization", "Basic eDp5"), ""},
	} {
		got := ""
		if r := c.Get(tc.req); r != nil {
			got = string(r.Body)
		}
		if got != tc.want {
			t.Errorf("%s %s %v: got %q, want %q", tc.req.Method, tc.req.URL, tc.req.Header, got, tc.want)
		}
	}
	if n := c.Len(); n != 5 {
		t.Fatalf("%d responses kept, want 5", n)
	}
}

func TestCacheEvictsOldestURLsOverBudget(t *testing.T) {
	c := NewResponseCache(10)
	body := []byte("0123")
	for _, p := range []string{"/a", "/b", "/c"} {
		c.Put(get(p), 200, nil, body)
	}
	if c.Get(get("/a")) != nil || c.Get(get("/b")) == nil || c.Get(get("/c")) == nil {
		t.Fatal("the oldest URL was not the one evicted")
	}
	c.Put(get("/big"), 200, nil, []byte(strings.Repeat("x", MaxCachedBody+1)))
	if c.Get(get("/big")) != nil {
		t.Fatal("a body over MaxCachedBody was kept")
	}
}

// HEAD gets the kept GET response's headers without its body.
func TestCacheFallbackAnswersHEADWithoutBody(t *testing.T) {
	s, _ := New(Config{Fallback: Fallback{Kind: Cache}})
	s.Cache().Put(get("/a"), 200, http.Header{"Content-Type": {"text/plain"}}, []byte("body"))
	rec := httptest.NewRecorder()
	s.WriteFallback(rec, httptest.NewRequest("HEAD", "/a", nil))
	if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("X-Mercury-Degraded") != "cache" {
		t.Fatalf("HEAD: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	rec = httptest.NewRecorder()
	s.WriteFallback(rec, httptest.NewRequest("DELETE", "/a", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("DELETE got %d from the cache", rec.Code)
	}
}
