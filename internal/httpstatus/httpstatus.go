// Package httpstatus records the status an http.Handler sends, for the tracing middleware
// and the gateway, which both report it.
package httpstatus

import (
	"io"
	"net/http"
)

// Recorder is an http.ResponseWriter that notes the final status sent through it. It hides
// nothing the real writer can do: Flush, ReadFrom (sendfile) and Unwrap (for
// http.ResponseController) pass through. Hijack is left to the caller, which should offer it
// only when the real writer has it: libraries choose their code path by asserting
// http.Hijacker.
type Recorder struct {
	http.ResponseWriter
	code int
}

// Code is the final status sent so far, or 0 when nothing was (net/http then sends 200).
// Informational 1xx statuses (100 Continue, 103 Early Hints) are not final and not recorded.
func (w *Recorder) Code() int { return w.code }

func (w *Recorder) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *Recorder) Write(p []byte) (int, error) {
	w.sent()
	return w.ResponseWriter.Write(p)
}

func (w *Recorder) ReadFrom(src io.Reader) (int64, error) {
	w.sent()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{w.ResponseWriter}, src)
}

// writerOnly hides ReadFrom so io.Copy does not loop back into it.
type writerOnly struct{ io.Writer }

func (w *Recorder) Flush() {
	w.sent()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *Recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// sent notes the implicit 200 of a body written before any status.
func (w *Recorder) sent() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
}
