package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"strings"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/ingest/otlp"
	"github.com/mercury-apm/mercury/internal/daemon"
)

func otlpFlags(fs *flag.FlagSet) func(context.Context) error {
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	httpAddr := fs.String("http", otlp.DefaultHTTPAddr, "OTLP/HTTP address (POST /v1/traces), also serving /metrics, /healthz and /readyz")
	grpcAddr := fs.String("grpc", otlp.DefaultGRPCAddr, `OTLP/gRPC address ("off": no gRPC)`)
	keys := fs.String("business-keys", strings.Join(otlp.DefaultBusinessKeys, ","), "span attributes that become business keys: names, or attribute=name to rename (app.order_id=order_id)")
	domainAttr := fs.String("domain-attribute", otlp.DefaultDomainAttribute, "resource attribute naming the domain (without it a service is its own domain)")
	return func(ctx context.Context) error {
		bc, err := bf.Config()
		if err != nil {
			return err
		}
		cfg := otlp.Config{Telemetry: daemon.NewTelemetry(slog.Default()), Bus: bc, BusinessKeys: otlp.ParseBusinessKeys(*keys), DomainAttribute: *domainAttr}
		if *grpcAddr != "off" {
			if cfg.GRPC, err = net.Listen("tcp", *grpcAddr); err != nil {
				return err
			}
			cfg.Logger.Info("otlp: OTLP/gRPC listening", "addr", cfg.GRPC.Addr().String())
		}
		in, err := otlp.New(cfg)
		if err == nil {
			var ln *daemon.Listener
			if ln, err = daemon.Listen(*httpAddr); err == nil {
				return daemon.Run(ctx, daemon.Options{Name: "otlp", Telemetry: cfg.Telemetry, Listener: ln, Components: []daemon.Component{in}})
			}
		}
		if cfg.GRPC != nil {
			cfg.GRPC.Close()
		}
		return err
	}
}
