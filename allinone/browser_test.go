package allinone_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mercury-apm/mercury/allinone"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/query/client"
	"github.com/mercury-apm/mercury/query/traces"
)

// TestBrowser drives the web UI in headless Chromium against one in-process pipeline with
// demo traffic: what a user clicks through, checked against what the API says.
func TestBrowser(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("no chromium, chromium-browser or google-chrome on PATH: the browser tests need one")
	}
	const token = "browser-test-token"
	ctx, cancel := context.WithCancel(context.Background())
	s, err := start(ctx, allinone.Config{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		OTLPHTTPAddr: "off", OTLPGRPCAddr: "off", Demo: true, DemoEvery: 20 * time.Millisecond, AdminToken: token,
		Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); s.Wait() }()
	qc := &client.Client{BaseURL: s.QueryURL()}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	if err := chromedp.Do(tab); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", chromium, err)
	}
	b := &browser{t: t, tab: tab, base: s.QueryURL(), shots: os.Getenv("MERCURY_ARTIFACTS")}
	if b.shots == "" {
		b.shots = t.TempDir()
	} else if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// 1. Search an order id, open its trace: every service of the trace is in the waterfall.
	const orderID = 424242001
	if _, err := s.Demo().Order(ctx, orderID, "browser"); err != nil {
		t.Fatal(err)
	}
	tr := waitForTrace(t, qc, orderID, time.Now().Add(10*time.Second))
	b.step("search", 20*time.Second, func(ctx context.Context) error {
		if err := chromedp.Do(ctx,
			chromedp.Navigate(b.base+"/"),
			chromedp.WaitVisible(chromedp.CSS(`#search input[name=bk]`)),
			chromedp.SendKeys(chromedp.CSS(`#search input[name=bk]`), "order_id:"+strconv.Itoa(orderID)),
			chromedp.Click(chromedp.CSS(`#search button`)),
			chromedp.Click(chromedp.CSS(`#trace-list a`)),
			chromedp.WaitVisible(chromedp.CSS(`#waterfall .span-bar`)),
		); err != nil {
			return err
		}
		if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || !strings.Contains(loc, "trace="+tr.TraceID) {
			return fmt.Errorf("opened %s (%v), want trace %s", loc, err, tr.TraceID)
		}
		shown, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#waterfall .wf-row[data-span] .svc")].map((e) => e.textContent)`))
		if err != nil {
			return err
		}
		if len(shown) != tr.SpanCount {
			return fmt.Errorf("waterfall has %d rows, the trace %d spans", len(shown), tr.SpanCount)
		}
		for _, svc := range tr.Services {
			if !slices.Contains(shown, svc) {
				return fmt.Errorf("service %s of trace %s is not in the waterfall (it shows %v)", svc, tr.TraceID, shown)
			}
		}
		return nil
	})

	// 2. Each bar sits where its span's nanoseconds put it, and inside its parent's bar.
	b.step("waterfall", 10*time.Second, func(ctx context.Context) error {
		type bar struct {
			Span       string  `json:"span"`
			Parent     string  `json:"parent"`
			Left       float64 `json:"left"`
			Width      float64 `json:"width"`
			TrackLeft  float64 `json:"trackLeft"`
			TrackWidth float64 `json:"trackWidth"`
		}
		bars, err := chromedp.Run(ctx, chromedp.Evaluate[[]bar](`[...document.querySelectorAll("#waterfall .span-bar")].map((e) => {
			const r = e.getBoundingClientRect(), tr = e.parentElement.getBoundingClientRect();
			return { span: e.dataset.span, parent: e.dataset.parent, left: r.left, width: r.width, trackLeft: tr.left, trackWidth: tr.width };
		})`))
		if err != nil {
			return err
		}
		spans := map[string]*traces.Span{}
		var walk func(*traces.Span)
		walk = func(sp *traces.Span) {
			spans[sp.SpanID] = sp
			for _, c := range sp.Children {
				walk(c)
			}
		}
		for _, r := range tr.Roots {
			walk(r)
		}
		if len(bars) != len(spans) {
			return fmt.Errorf("%d bars for %d spans", len(bars), len(spans))
		}
		byID := map[string]bar{}
		for _, x := range bars {
			byID[x.Span] = x
		}
		total := float64(tr.DurationNano)
		for _, x := range bars {
			sp := spans[x.Span]
			if sp == nil {
				return fmt.Errorf("bar of span %s, which the trace lacks", x.Span)
			}
			want := float64(sp.Start.Sub(tr.Start).Nanoseconds()) / total
			if got := (x.Left - x.TrackLeft) / x.TrackWidth; math.Abs(got-want) > 0.005 {
				return fmt.Errorf("span %s %s starts at %.4f of the waterfall, its start_ns at %.4f of the trace", sp.Service, sp.Operation, got, want)
			}
			if x.Parent == "" {
				continue
			}
			p, ok := byID[x.Parent]
			if !ok {
				return fmt.Errorf("span %s: parent bar %s missing", x.Span, x.Parent)
			}
			if x.Left < p.Left-1 || x.Left+x.Width > p.Left+p.Width+1 {
				return fmt.Errorf("span %s %s [%.1f, %.1f] px outside its parent's bar [%.1f, %.1f]", sp.Service, sp.Operation,
					x.Left, x.Left+x.Width, p.Left, p.Left+p.Width)
			}
		}
		return nil
	})

	// 3. The order service's qps chart has minute points with requests in them.
	b.step("service", 60*time.Second, func(ctx context.Context) error {
		return b.reloadUntil(ctx, b.base+"/?page=service&service=order", `(() => {
			const c = document.querySelector("#chart-qps[data-points]");
			return c && +c.dataset.points > 0 && +c.dataset.nonzero > 0;
		})()`)
	})

	// 4. The topology shows api, order, payment and the database.
	b.step("topology", 30*time.Second, func(ctx context.Context) error {
		return b.reloadUntil(ctx, b.base+"/?page=topology", `(() => {
			const g = document.querySelector("#topology-graph[data-nodes]");
			return g && g.dataset.nodes.split(",").length >= 3;
		})()`)
	})

	// 5. The payment failures' alert is acknowledged from the board with the admin token.
	var acked string
	b.step("alerts", 30*time.Second, func(ctx context.Context) error {
		if err := b.reloadUntil(ctx, b.base+"/?page=alerts&service=payment", `!!document.querySelector("[data-ack]")`); err != nil {
			return err
		}
		id, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`[data-ack]`), "data-ack"))
		if err != nil {
			return err
		}
		acked = id.Value
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-ack="`+acked+`"]`))); err != nil {
			return err
		}
		if err := b.giveToken(ctx, token); err != nil {
			return err
		}
		if err := outcome(ctx, "#msg .ok"); err != nil {
			return err
		}
		var alerts struct {
			Alerts []struct {
				ID      string `json:"id"`
				AckedBy string `json:"acked_by"`
			} `json:"alerts"`
		}
		if err := qc.Get(ctx, "/api/v1/alerts", &alerts); err != nil {
			return err
		}
		for _, a := range alerts.Alerts {
			if a.ID == acked {
				if a.AckedBy == "" {
					return fmt.Errorf("alert %s: the API says not acknowledged", acked)
				}
				return nil
			}
		}
		return fmt.Errorf("alert %s not in /api/v1/alerts", acked)
	})

	// 6. A sample rate saved in the agent-config editor is what order's agents are served.
	b.step("config", 20*time.Second, func(ctx context.Context) error {
		const rate = 0.37
		if err := chromedp.Do(ctx,
			chromedp.Navigate(b.base+"/?page=config&level=service&name=order"),
			chromedp.WaitVisible(chromedp.CSS(`#config-form input[name=sample_rate]`)),
			chromedp.SetValue(chromedp.CSS(`#config-form input[name=sample_rate]`), strconv.FormatFloat(rate, 'f', -1, 64)),
			chromedp.Click(chromedp.CSS(`#config-form button`)),
		); err != nil {
			return err
		}
		// The token is kept for the tab since step 5; asked again only if that step did not get it.
		if err := b.giveToken(ctx, token); err != nil {
			return err
		}
		if err := outcome(ctx, "#saved"); err != nil {
			return err
		}
		var cfg struct {
			SampleRate *float64 `json:"sample_rate"`
		}
		if err := qc.Get(ctx, "/api/v1/agent-config?service=order", &cfg); err != nil {
			return err
		}
		if cfg.SampleRate == nil || *cfg.SampleRate != rate {
			return fmt.Errorf("agent-config for order serves sample_rate %v, want %v", cfg.SampleRate, rate)
		}
		return nil
	})
}

// browser is one tab the steps share, and where their screenshots go.
type browser struct {
	t          *testing.T
	tab        context.Context
	base       string
	shots      string
	screenshot int
}

// step runs one check with its own deadline and screenshots the page after it, pass or fail.
func (b *browser) step(name string, timeout time.Duration, check func(ctx context.Context) error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, timeout)
	defer cancel()
	began := time.Now()
	err := check(ctx)
	b.t.Logf("%s: %v in %s", name, errOrOK(err), time.Since(began).Round(time.Millisecond))
	b.screenshot++
	file := filepath.Join(b.shots, fmt.Sprintf("browser-%d-%s.png", b.screenshot, name))
	shotCtx, cancelShot := context.WithTimeout(b.tab, 10*time.Second)
	defer cancelShot()
	if png, serr := chromedp.Run(shotCtx, chromedp.FullScreenshot(100)); serr != nil {
		b.t.Errorf("%s: screenshot: %v", name, serr)
	} else if werr := os.WriteFile(file, png, 0o644); werr != nil {
		b.t.Errorf("%s: %v", name, werr)
	}
	if err != nil {
		b.t.Errorf("%s: %v (screenshot %s)", name, err, file)
	}
}

// reloadUntil opens url, and again each second, until the JavaScript condition holds: the
// pages show what the API had when they loaded.
func (b *browser) reloadUntil(ctx context.Context, url, cond string) error {
	for {
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			return err
		}
		// The page's data arrives after the load; give it a moment to render before reloading.
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := chromedp.Run(pctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond)))
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %s never held: %w", url, cond, ctx.Err())
		}
	}
}

// giveToken fills the admin-token dialog when the page asks for the token; it returns once
// the dialog is closed or was never opened.
func (b *browser) giveToken(ctx context.Context, token string) error {
	open, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => {
		if (document.querySelector("#token-dialog").open) return "open";
		if (document.querySelector("#saved, #msg .ok, #msg .err")) return "done";
		return "";
	})()`, chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil || open != "open" {
		return err
	}
	return chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#token-dialog input[name=token]`), token),
		chromedp.Click(chromedp.CSS(`#token-dialog button[value=ok]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#token-dialog`)),
	)
}

// outcome waits for the page to show that an admin write succeeded (done), or the error
// the server gave.
func outcome(ctx context.Context, done string) error {
	got, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => {
		const e = document.querySelector("#msg .err");
		if (e) return "error: " + e.textContent;
		return document.querySelector(`+strconv.Quote(done)+`) ? "ok" : "";
	})()`, chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", done, err)
	}
	if got != "ok" {
		return fmt.Errorf("the page says %s", got)
	}
	return nil
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func errOrOK(err error) string {
	if err != nil {
		return "failed"
	}
	return "ok"
}
