package otlp

import (
	"context"
	"errors"

	coltrace "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // exporters may compress
	"google.golang.org/grpc/status"
)

// The slim OTLP module (messages only, no grpc-gateway) has no service stubs: this is the
// descriptor protoc-gen-go-grpc generates for opentelemetry.proto.collector.trace.v1.TraceService.
// The method path is what exporters call; the messages are wire-compatible.
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*traceServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: exportHandler}},
	Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

type traceServer interface {
	Export(context.Context, *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error)
}

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

func exportHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	req := new(coltrace.ExportTraceServiceRequest)
	if err := dec(req); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(traceServer).Export(ctx, req)
	}
	return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: exportMethod}, func(ctx context.Context, req any) (any, error) {
		return srv.(traceServer).Export(ctx, req.(*coltrace.ExportTraceServiceRequest))
	})
}

// Export is TraceService/Export: Unavailable (retryable) when the bus does not take the
// spans, a partial success for the spans rejected.
func (in *Ingest) Export(ctx context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	partial, err := in.export(ctx, req)
	var be *busError
	switch {
	case errors.As(err, &be):
		err = status.Error(codes.Unavailable, err.Error())
	case err != nil:
		in.cfg.Logger.Error("otlp: export", "err", err)
		err = status.Error(codes.Internal, err.Error())
	}
	in.m.requests.WithLabelValues("grpc", status.Code(err).String()).Inc()
	if err != nil {
		return nil, err
	}
	return &coltrace.ExportTraceServiceResponse{PartialSuccess: partial}, nil
}
