package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/alerter"
	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/alerter/rules"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/storage"
)

func alerterFlags(fs *flag.FlagSet) func(context.Context) error {
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	data := fs.String("data", "data", "data directory: the embedded alert store is DIR/alerts (used when --hbase is not set)")
	hbase := fs.String("hbase", "", "HBase REST gateway URL for the alert store (shared with `mercury query --hbase`) and the metric history of baseline rules")
	httpAddr := fs.String("http", "127.0.0.1:9469", "address for /metrics, /healthz and /readyz")
	window := fs.Duration("window", 10*time.Second, "convergence window of events no rule gives one")
	depth := fs.Int("stack-depth", 5, "top stack frames in an event's default signature")
	webhook := fs.String("webhook", "", "URL of a generic JSON webhook (receiver \"webhook\")")
	am := fs.String("alertmanager", "", "Alertmanager base URL, e.g. http://127.0.0.1:9093 (receiver \"alertmanager\")")
	smtpAddr := fs.String("smtp", "", "SMTP server host:port for email (receiver \"email\", with --email-from and --email-to)")
	from := fs.String("email-from", "", "sender address of alert mail")
	to := fs.String("email-to", "", "comma-separated recipients of alert mail")
	smtpUser := fs.String("smtp-user", "", "SMTP user (PLAIN auth; TLS or localhost only)")
	smtpPassEnv := fs.String("smtp-password-env", "MERCURY_SMTP_PASSWORD", "environment variable holding the SMTP password (kept off the command line)")
	defaults := fs.String("receivers", "", "comma-separated receivers of alerts no strategy routes (empty: log and every receiver configured above)")
	link := fs.String("link-base", "http://127.0.0.1:8080", "the query API's URL, for the links in notifications")
	return func(ctx context.Context) error {
		bc, err := bf.Config()
		if err != nil {
			return err
		}
		var receivers []notify.Config
		if *webhook != "" {
			receivers = append(receivers, notify.Config{Name: "webhook", Type: notify.TypeWebhook, URL: *webhook})
		}
		if *am != "" {
			receivers = append(receivers, notify.Config{Name: "alertmanager", Type: notify.TypeAlertmanager, URL: *am})
		}
		if *smtpAddr != "" {
			receivers = append(receivers, notify.Config{Name: "email", Type: notify.TypeEmail, SMTP: *smtpAddr, From: *from,
				To: list(*to), Username: *smtpUser, Password: os.Getenv(*smtpPassEnv)})
		}
		dflt := []string{"log"}
		for _, r := range receivers {
			dflt = append(dflt, r.Name)
		}
		if *defaults != "" {
			dflt = list(*defaults)
		}
		sc := storage.Config{DataDir: *data, HBaseURL: *hbase}
		store, err := storage.OpenAlerts(ctx, sc)
		if err != nil {
			return err
		}
		defer store.Close()
		// Baselines read the metric store phase 2 writes; an embedded one belongs to phase 2's
		// process, so without HBase the alerter keeps the points it consumed in memory.
		var history rules.History
		if *hbase != "" {
			metrics, err := storage.OpenMetrics(ctx, sc)
			if err != nil {
				return err
			}
			defer metrics.Close()
			history = rules.StoreHistory{Store: metrics}
		}
		tel := daemon.NewTelemetry(slog.Default())
		a, err := alerter.New(alerter.Config{Telemetry: tel, Bus: bc, Store: store, Window: *window, StackDepth: *depth,
			Receivers: receivers, DefaultReceivers: dflt, LinkBase: *link, History: history, Quantiles: rules.SketchQuantiles})
		if err != nil {
			return err
		}
		ln, err := daemon.Listen(*httpAddr)
		if err != nil {
			return err
		}
		return daemon.Run(ctx, daemon.Options{Name: "alerter", Telemetry: tel, Listener: ln, Components: []daemon.Component{a}})
	}
}

// list splits a comma-separated flag, dropping blanks.
func list(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}
