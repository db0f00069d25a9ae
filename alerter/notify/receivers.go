package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// Receiver types.
const (
	TypeWebhook      = "webhook"
	TypeAlertmanager = "alertmanager"
	TypeEmail        = "email"
	TypeLog          = "log"
)

// Config describes one receiver.
type Config struct {
	Name string `json:"name" yaml:"name"`
	Type string `json:"type" yaml:"type"`
	// webhook: the URL to POST to; alertmanager: its base URL (http://host:9093).
	URL     string            `json:"url,omitempty" yaml:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	// email
	SMTP     string   `json:"smtp,omitempty" yaml:"smtp,omitempty"` // host:port
	From     string   `json:"from,omitempty" yaml:"from,omitempty"`
	To       []string `json:"to,omitempty" yaml:"to,omitempty"`
	Username string   `json:"username,omitempty" yaml:"username,omitempty"`
	Password string   `json:"-" yaml:"password,omitempty"`
}

// Build makes the receivers cfgs describe, by name.
func Build(cfgs []Config, log *slog.Logger) (map[string]Receiver, error) {
	out := make(map[string]Receiver, len(cfgs))
	client := &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       time.Minute,
	}}
	for _, c := range cfgs {
		if err := alertstore.CheckName("receiver", c.Name); err != nil {
			return nil, err
		}
		if _, dup := out[c.Name]; dup {
			return nil, fmt.Errorf("notify: receiver %s defined twice", c.Name)
		}
		var r Receiver
		switch c.Type {
		case TypeWebhook, TypeAlertmanager:
			u, err := url.Parse(c.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("notify: receiver %s: url %q: want http(s)://host[:port]/...", c.Name, c.URL)
			}
			if c.Type == TypeWebhook {
				r = &Webhook{URL: c.URL, Headers: c.Headers, Client: client}
			} else {
				r = &Alertmanager{URL: strings.TrimRight(c.URL, "/"), Client: client}
			}
		case TypeEmail:
			if _, _, err := net.SplitHostPort(c.SMTP); err != nil {
				return nil, fmt.Errorf("notify: receiver %s: smtp %q: want host:port", c.Name, c.SMTP)
			}
			if c.From == "" || len(c.To) == 0 {
				return nil, fmt.Errorf("notify: receiver %s: email needs from and to", c.Name)
			}
			r = &Email{Addr: c.SMTP, From: c.From, To: c.To, Username: c.Username, Password: c.Password}
		case TypeLog:
			r = Log{Logger: log}
		default:
			return nil, fmt.Errorf("notify: receiver %s: type %q: want webhook, alertmanager, email or log", c.Name, c.Type)
		}
		out[c.Name] = r
	}
	return out, nil
}

// Webhook POSTs the notification as JSON:
//
//	{"version":"mercury.alert.v1","event":"fired","alert":{...},"links":{...}}
type Webhook struct {
	URL     string
	Headers map[string]string
	Client  *http.Client
}

// WebhookBody is what a webhook receives.
type WebhookBody struct {
	Version string           `json:"version"`
	Event   string           `json:"event"`
	Alert   alertstore.Alert `json:"alert"`
	Links   Links            `json:"links"`
}

// Notify posts n.
func (w *Webhook) Notify(ctx context.Context, n Notification) error {
	a := n.Alert
	a.Outbox, a.History = nil, nil // delivery bookkeeping is not the receiver's business
	body, err := json.Marshal(WebhookBody{Version: "mercury.alert.v1", Event: n.Event, Alert: a, Links: n.Links})
	if err != nil {
		return retry.Permanent(err)
	}
	h := map[string]string{NoticeHeader: n.NoticeID}
	for k, v := range w.Headers {
		h[k] = v
	}
	return post(ctx, w.Client, w.URL, body, h, "webhook")
}

// NoticeHeader carries the notice's id on webhook requests: delivery is at least once (a
// dispatcher that dies between the receiver's reply and recording it leaves the notice to
// the next), so a receiver that must not act twice deduplicates on it.
const NoticeHeader = "X-Mercury-Notice"

func post(ctx context.Context, c *http.Client, url string, body []byte, headers map[string]string, what string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return retry.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return retry.StatusError(resp.StatusCode, what)
}

// Alertmanager posts to an Alertmanager's API v2 (POST /api/v2/alerts) so an existing
// Alertmanager routes, groups and inhibits. A resolution is the same alert (same labels)
// with endsAt set; an event alert is posted with endsAt at its window's end, so
// Alertmanager resolves it by itself when the window passes. A metric or self alert, whose
// end is not known, is posted with endsAt Hold ahead and re-posted (Refreshed) while it
// fires, as Prometheus does: if the alerter dies, Alertmanager resolves it after Hold
// instead of keeping it forever.
type Alertmanager struct {
	URL    string // base, e.g. http://127.0.0.1:9093
	Client *http.Client
	Hold   time.Duration // default 4 × RefreshEvery
	Now    func() time.Time
}

// RefreshEvery is how often the dispatcher re-posts firing alerts to Alertmanagers.
const RefreshEvery = time.Minute

// AMAlert is one element of Alertmanager's postable alerts.
type AMAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// AMLabels are the labels an alert has in Alertmanager: its identity there.
func AMLabels(a *alertstore.Alert) map[string]string {
	l := map[string]string{"alertname": a.Rule, "severity": a.Level, "mercury_kind": a.Kind, "mercury_key": a.Key}
	if l["alertname"] == "" {
		l["alertname"] = "mercury_" + a.Kind
	}
	for k, v := range map[string]string{"domain": a.Domain, "service": a.Service, "operation": a.Operation, "signature": a.Signature} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

// Notify posts n.
func (m *Alertmanager) Notify(ctx context.Context, n Notification) error {
	a := &n.Alert
	am := AMAlert{Labels: AMLabels(a), StartsAt: a.StartsAt, GeneratorURL: n.Links.Alert,
		Annotations: map[string]string{"summary": a.Summary, "mercury_id": a.ID,
			"count": fmt.Sprint(a.Count), "suppressed": fmt.Sprint(a.Suppressed)}}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	switch {
	case n.Event == Resolved:
		am.EndsAt = a.ResolvedAt
		if am.EndsAt.IsZero() {
			am.EndsAt = now()
		}
	case !a.EndsAt.IsZero():
		am.EndsAt = a.EndsAt
	default:
		hold := m.Hold
		if hold <= 0 {
			hold = 4 * RefreshEvery
		}
		am.EndsAt = now().Add(hold)
	}
	if !strings.HasPrefix(am.GeneratorURL, "http") {
		am.GeneratorURL = "" // Alertmanager rejects a relative URL
	}
	body, err := json.Marshal([]AMAlert{am})
	if err != nil {
		return retry.Permanent(err)
	}
	return post(ctx, m.Client, m.URL+"/api/v2/alerts", body, nil, "alertmanager")
}

// Email sends a plain-text mail through an SMTP server (net/smtp: STARTTLS when the server
// offers it; PLAIN auth when a username is set, which net/smtp allows only over TLS or to
// localhost).
type Email struct {
	Addr, From         string
	To                 []string
	Username, Password string
}

// Notify mails n.
func (e *Email) Notify(ctx context.Context, n Notification) error {
	msg := Message(e.From, e.To, n)
	var auth smtp.Auth
	if e.Username != "" {
		host, _, _ := net.SplitHostPort(e.Addr)
		auth = smtp.PlainAuth("", e.Username, e.Password, host)
	}
	done := make(chan error, 1)
	go func() { done <- smtp.SendMail(e.Addr, auth, e.From, e.To, msg) }()
	select {
	case err := <-done:
		var perr *textproto.Error
		if errors.As(err, &perr) && perr.Code >= 500 {
			return retry.Permanent(err) // 5xx: the server refused the mail for good
		}
		if err != nil {
			return fmt.Errorf("email: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("email: %w", ctx.Err())
	}
}

// Message renders the mail: headers and a text body with the alert and its links.
func Message(from string, to []string, n Notification) []byte {
	a := &n.Alert
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\n", from, strings.Join(to, ", "))
	if n.NoticeID != "" { // the same notice sent twice is the same message to a mail client
		fmt.Fprintf(&b, "Message-ID: <%s@mercury>\r\n", strings.NewReplacer("/", ".", " ", "").Replace(n.NoticeID))
	}
	fmt.Fprintf(&b, "Subject: [%s %s] %s\r\n", strings.ToUpper(a.Level), n.Event, oneLine(a.Summary))
	fmt.Fprintf(&b, "Date: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "%s\r\n\r\n", a.Summary)
	fmt.Fprintf(&b, "alert:      %s (%s, %s)\r\n", a.ID, a.Kind, a.State)
	fmt.Fprintf(&b, "service:    %s %s\r\n", a.Service, a.Operation)
	fmt.Fprintf(&b, "started:    %s\r\n", a.StartsAt.UTC().Format(time.RFC3339))
	if a.Kind == alertstore.KindMetric {
		fmt.Fprintf(&b, "value:      %g (threshold %g)\r\n", a.Value, a.Threshold)
	} else {
		fmt.Fprintf(&b, "count:      %d (suppressed %d; before this window %d from %d host(s))\r\n", a.Count, a.Suppressed, a.PrevSuppressed, len(a.PrevHosts))
	}
	if len(a.Hosts) > 0 {
		fmt.Fprintf(&b, "hosts:      %s\r\n", strings.Join(a.Hosts, ", "))
	}
	labels := make([]string, 0, len(a.Labels))
	for k, v := range a.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	if len(labels) > 0 {
		fmt.Fprintf(&b, "labels:     %s\r\n", strings.Join(labels, " "))
	}
	fmt.Fprintf(&b, "\r\nalert:  %s\r\n", n.Links.Alert)
	if n.Links.Events != "" {
		fmt.Fprintf(&b, "events: %s\r\n", n.Links.Events)
	}
	for _, t := range n.Links.Traces {
		fmt.Fprintf(&b, "trace:  %s\r\n", t)
	}
	return b.Bytes()
}

func oneLine(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}
