package httpstatus

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRecorder(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(w http.ResponseWriter)
		want int
	}{
		{"nothing sent", func(http.ResponseWriter) {}, 0},
		{"early hints, then the answer", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusNotFound)
		}, http.StatusNotFound},
		{"body without a status", func(w http.ResponseWriter) { w.Write([]byte("x")) }, http.StatusOK},
		{"second status ignored", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusTeapot)
			w.WriteHeader(http.StatusOK)
		}, http.StatusTeapot},
		{"copy through ReadFrom", func(w http.ResponseWriter) {
			w.(*Recorder).ReadFrom(strings.NewReader("body"))
		}, http.StatusOK},
		{"flush through a ResponseController", func(w http.ResponseWriter) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Fatal(err)
			}
		}, http.StatusOK},
	} {
		real := httptest.NewRecorder()
		rec := &Recorder{ResponseWriter: real}
		tc.send(rec)
		if rec.Code() != tc.want {
			t.Errorf("%s: code %d, want %d", tc.name, rec.Code(), tc.want)
		}
	}
	real := httptest.NewRecorder()
	rec := &Recorder{ResponseWriter: real}
	rec.ReadFrom(strings.NewReader("body"))
	http.NewResponseController(rec).Flush()
	if real.Body.String() != "body" || !real.Flushed {
		t.Fatalf("the real writer got %q, flushed %v", real.Body.String(), real.Flushed)
	}
}
