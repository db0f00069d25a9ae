package otlp

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"

	coltrace "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Media types of OTLP/HTTP.
const (
	ContentTypeProtobuf = "application/x-protobuf"
	ContentTypeJSON     = "application/json"
)

// HTTPHandler serves OTLP/HTTP export requests (POST /v1/traces). Replies use the request's
// content type; errors are a google.rpc.Status, as the OTLP specification asks.
func (in *Ingest) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := in.serveHTTP(w, r)
		in.m.requests.WithLabelValues("http", strconv.Itoa(code)).Inc()
	})
}

var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (in *Ingest) serveHTTP(w http.ResponseWriter, r *http.Request) int {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := mt == ContentTypeJSON
	if err != nil || (mt != ContentTypeProtobuf && !isJSON) {
		return reply(w, false, http.StatusUnsupportedMediaType, errStatus(codes.InvalidArgument,
			"content type %q: want %s or %s", r.Header.Get("Content-Type"), ContentTypeProtobuf, ContentTypeJSON))
	}
	limit := in.cfg.MaxBodyBytes
	var body io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return in.readFailed(w, isJSON, err)
		}
		defer zr.Close()
		body = zr
	default:
		return reply(w, isJSON, http.StatusUnsupportedMediaType, errStatus(codes.InvalidArgument, "content encoding %q: want gzip or none", enc))
	}
	buf := bodies.Get().(*bytes.Buffer)
	defer bodies.Put(buf)
	buf.Reset()
	// One byte past the limit tells a decompressed body that is too large from one that fits.
	if _, err := buf.ReadFrom(io.LimitReader(body, limit+1)); err != nil {
		return in.readFailed(w, isJSON, err)
	}
	if int64(buf.Len()) > limit {
		return reply(w, isJSON, http.StatusRequestEntityTooLarge, errStatus(codes.InvalidArgument, "body larger than %d bytes decompressed", limit))
	}
	req := &coltrace.ExportTraceServiceRequest{}
	if isJSON {
		err = decodeJSON(buf.Bytes(), req)
	} else {
		err = decodeProtobuf(buf.Bytes(), req)
	}
	if err != nil {
		return reply(w, isJSON, http.StatusBadRequest, errStatus(codes.InvalidArgument, "%v", err))
	}
	partial, err := in.export(r.Context(), req)
	var be *busError
	switch {
	case errors.As(err, &be):
		// Retryable per the OTLP specification: the exporter backs off and sends again.
		w.Header().Set("Retry-After", "2")
		return reply(w, isJSON, http.StatusServiceUnavailable, errStatus(codes.Unavailable, "%v", err))
	case err != nil:
		in.cfg.Logger.Error("otlp: export", "err", err)
		return reply(w, isJSON, http.StatusInternalServerError, errStatus(codes.Internal, "%v", err))
	}
	return reply(w, isJSON, http.StatusOK, &coltrace.ExportTraceServiceResponse{PartialSuccess: partial})
}

// readFailed answers a body that could not be read: 413 past the size limit, else 400.
func (in *Ingest) readFailed(w http.ResponseWriter, isJSON bool, err error) int {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return reply(w, isJSON, http.StatusRequestEntityTooLarge, errStatus(codes.InvalidArgument, "body larger than %d bytes", tooBig.Limit))
	}
	return reply(w, isJSON, http.StatusBadRequest, errStatus(codes.InvalidArgument, "read body: %v", err))
}

func errStatus(c codes.Code, format string, args ...any) proto.Message {
	return status.New(c, fmt.Sprintf(format, args...)).Proto()
}

func reply(w http.ResponseWriter, isJSON bool, code int, msg proto.Message) int {
	var b []byte
	var err error
	if isJSON {
		w.Header().Set("Content-Type", ContentTypeJSON)
		b, err = protojson.Marshal(msg)
	} else {
		w.Header().Set("Content-Type", ContentTypeProtobuf)
		b, err = proto.Marshal(msg)
	}
	if err != nil { // the messages are ours: a failure here is a defect
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return http.StatusInternalServerError
	}
	w.WriteHeader(code)
	w.Write(b)
	return code
}
