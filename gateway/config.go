package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/mercury-apm/mercury/gateway/cpu"
	"github.com/mercury-apm/mercury/gateway/degrade"
	"github.com/mercury-apm/mercury/gateway/upstream"
	"github.com/mercury-apm/mercury/internal/clock"
)

// Config is the gateway configuration: the YAML document plus injection
// points for tests and embedding (the fields tagged yaml:"-").
type Config struct {
	Listen      string `yaml:"listen"`       // proxy address, default "127.0.0.1:8480"
	AdminListen string `yaml:"admin_listen"` // admin/metrics address, default "127.0.0.1:8481"
	// AdminToken guards the admin write endpoints (Bearer token). Default
	// from MERCURY_ADMIN_TOKEN; with none, writes are refused.
	AdminToken string `yaml:"admin_token"`
	Region     string `yaml:"region"` // this gateway's region, for spans and logs
	// SentryDSN receives recovered panics; default from SENTRY_DSN. Empty:
	// panics are only logged.
	SentryDSN       string        `yaml:"sentry_dsn"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"` // default 15s
	// StateFile keeps the operator's run-time state (degrade, retry and dye
	// switches, applied plans) across restarts; empty: not kept.
	StateFile string `yaml:"state_file"`
	// RetryAfter is sent as Retry-After with the gateway's own 429 and 503
	// answers (shed, limited, breaker open, bulkhead, degraded); default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`

	// MaxInFlight is the gateway-wide capacity tiered shedding measures load
	// against (in-flight / MaxInFlight); 0 leaves BBR's overload as the only
	// load signal.
	MaxInFlight int64 `yaml:"max_in_flight"`
	// TierThresholds[i] is the load at which tier i+1 is shed; default
	// [1, 0.9, 0.8, 0.7].
	TierThresholds [4]float64 `yaml:"tier_thresholds"`

	CPU   CPUConfig   `yaml:"cpu"`
	Retry RetryConfig `yaml:"retry"`
	// DyeDisabled starts with all dyed (load-test) traffic refused; PUT
	// /admin/dye turns it on and off at run time.
	DyeDisabled bool `yaml:"dye_disabled"`

	Routes []RouteConfig `yaml:"routes"`
	Plans  []PlanConfig  `yaml:"plans"`

	Clock     clock.Clock          `yaml:"-"` // primitives' clock; default real
	CPUSource cpu.Source           `yaml:"-"` // default: cgroup-aware sampler run by Run
	Observer  Observer             `yaml:"-"` // default: slog observer on Logger
	Logger    *slog.Logger         `yaml:"-"` // default slog.Default()
	Transport http.RoundTripper    `yaml:"-"` // upstream transport; default a tuned http.Transport
	Registry  *prometheus.Registry `yaml:"-"` // default a fresh registry
}

// CPUConfig tunes the CPU sampler behind BBR.
type CPUConfig struct {
	Threshold  float64       `yaml:"threshold"`   // default 0.8
	Interval   time.Duration `yaml:"interval"`    // sampling period, default 500ms
	Decay      float64       `yaml:"decay"`       // EMA decay per sample, default 0.95
	CgroupRoot string        `yaml:"cgroup_root"` // default /sys/fs/cgroup
	ProcStat   string        `yaml:"proc_stat"`   // default /proc/stat
}

// RetryConfig holds the cross-region retry switches and window tuning.
type RetryConfig struct {
	Disabled         bool          `yaml:"disabled"`          // global switch (off)
	DisabledServices []string      `yaml:"disabled_services"` // per-service switches (off)
	Round            time.Duration `yaml:"round"`             // probe round, default 1s
	SuccessThreshold float64       `yaml:"success_threshold"` // default 0.98
	// MaxBodyBytes is the largest request body buffered for a replay;
	// bigger bodies are not retried. Default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// RouteConfig is one route: a path prefix served by one service.
type RouteConfig struct {
	Name        string `yaml:"name"`
	Prefix      string `yaml:"prefix"`
	StripPrefix bool   `yaml:"strip_prefix"`
	Service     string `yaml:"service"`
	Tier        int    `yaml:"tier"` // 1 (most critical) … 4, required

	Local  UpstreamConfig  `yaml:"local"`
	Remote *UpstreamConfig `yaml:"remote"`

	Timeout TimeoutConfig `yaml:"timeout"`
	// Budget is the request's total time, every try together (local,
	// failover): each try gets its own timeout capped by what is left, and
	// the upstream learns what is left from the X-Mercury-Budget-Ms header.
	// A caller's smaller header wins. Default: the longest single try (the
	// local timeout, or timeout.tmax with the dynamic timeout; or the remote
	// timeout if longer).
	Budget time.Duration `yaml:"budget"`
	// Middlewares lists the enabled middlewares, any of: tier, bbr, degrade,
	// ratelimit, breaker, dynamic_timeout, retry. Empty means all whose
	// settings are present (tier, bbr, degrade, breaker and retry need none;
	// retry fails over only with a remote section). The order of execution
	// is fixed; see docs/gateway.md.
	Middlewares []string `yaml:"middlewares"`

	RateLimit *RateLimitConfig `yaml:"ratelimit"`
	BBR       BBRConfig        `yaml:"bbr"`
	Breaker   BreakerConfig    `yaml:"breaker"`
	Degrade   DegradeConfig    `yaml:"degrade"`
	Retry     RouteRetry       `yaml:"retry"`

	// MaxConcurrent is the route's bulkhead: requests beyond it in flight
	// at once are refused with 503, so one slow route cannot take the
	// gateway's connections and goroutines from the others. 0: none.
	MaxConcurrent int64 `yaml:"max_concurrent"`
	// Dye isolates load-test traffic (X-Mercury-Dye) on the route.
	Dye DyeConfig `yaml:"dye"`
}

// DyeConfig gives dyed traffic its own limiter; it always has its own
// breaker (same settings as the route's) and its own metrics, so a load test
// can neither trip the breaker real users depend on nor eat their limit.
type DyeConfig struct {
	// RateLimit is dyed traffic's own limit; default the route's
	// ratelimit settings, with separate counters.
	RateLimit *RateLimitConfig `yaml:"ratelimit"`
}

// UpstreamConfig is a set of instances in one region.
type UpstreamConfig struct {
	Region      string               `yaml:"region"`
	Instances   []string             `yaml:"instances"`
	Balance     upstream.Balance     `yaml:"balance"`
	HealthCheck upstream.HealthCheck `yaml:"health_check"`
	// Outlier enables passive outlier ejection of instances (see package
	// upstream); absent leaves it off.
	Outlier *upstream.Outlier `yaml:"outlier"`
	// Timeout is the fixed timeout for this region; for the local region
	// the dynamic timeout replaces it when enabled. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
}

// TimeoutConfig enables the EMA dynamic timeout (see package timeout).
type TimeoutConfig struct {
	Thwm time.Duration `yaml:"thwm"`
	Tmax time.Duration `yaml:"tmax"`
	Tavg time.Duration `yaml:"tavg"`
	N    int           `yaml:"n"`
}

// RateLimitConfig is the route's sliding-window limit.
type RateLimitConfig struct {
	Limit   int64         `yaml:"limit"`
	Window  time.Duration `yaml:"window"`
	Buckets int           `yaml:"buckets"`
}

// BBRConfig tunes the route's adaptive limiter window.
type BBRConfig struct {
	Window  time.Duration `yaml:"window"`
	Buckets int           `yaml:"buckets"`
}

// BreakerConfig picks and tunes the route's breaker.
type BreakerConfig struct {
	Kind        string        `yaml:"kind"` // sre (default) or classic
	Window      time.Duration `yaml:"window"`
	Buckets     int           `yaml:"buckets"`
	MinRequests int64         `yaml:"min_requests"`
	// sre
	K float64 `yaml:"k"`
	// classic
	MaxFailures   int64         `yaml:"max_failures"`
	FailureRatio  float64       `yaml:"failure_ratio"`
	OpenFor       time.Duration `yaml:"open_for"`
	HalfOpenQuota int64         `yaml:"half_open_quota"`
	CloseRatio    float64       `yaml:"close_ratio"`
}

// DegradeConfig is the route's degradation switch.
type DegradeConfig struct {
	Fallback degrade.Fallback    `yaml:"fallback"`
	Auto     *degrade.AutoConfig `yaml:"auto"`
	// CacheBytes bounds the response bodies the cache fallback keeps for
	// the route (default 8 MiB; one response at most 256 KiB).
	CacheBytes int64 `yaml:"cache_bytes"`
	// OnFailure answers a single failed request (an upstream 5xx or
	// connection error or timeout, after every retry) with the fallback,
	// not only while the switch is on.
	OnFailure bool `yaml:"on_failure"`
}

// RouteRetry is the route's retry policy: what is worth another try, where,
// and how much retrying the route may do at once.
type RouteRetry struct {
	Disabled      bool `yaml:"disabled"`
	NonIdempotent bool `yaml:"non_idempotent"` // also replay POST/PATCH
	// OnStatus lists the upstream statuses worth another try; default 500,
	// 502, 503, 504. 501 and 505 answer the same everywhere and may not be
	// listed; 408, 429 and other 5xx may.
	OnStatus []int `yaml:"on_status"`
	// OnErrors lists the failures worth another try: connect (connection
	// errors, no healthy instance), timeout, refused (the local rate limit
	// or breaker). Default all three.
	OnErrors []string `yaml:"on_errors"`
	// NoLocalRetry turns off the retry on another local instance that runs
	// before any failover.
	NoLocalRetry bool `yaml:"no_local_retry"`
	// TimeoutRateBound: a timed-out try is retried locally only while the
	// route's local timeout rate (last 10 s) is below it; above, timeouts
	// go straight to the remote region. Default 0.1.
	TimeoutRateBound float64 `yaml:"timeout_rate_bound"`
	// BudgetPercent and BudgetMinConcurrent are the retry budget: retries
	// in progress at most BudgetPercent of the route's active requests, or
	// BudgetMinConcurrent, whichever is more. Default 20 % and 3.
	BudgetPercent       float64 `yaml:"budget_percent"`
	BudgetMinConcurrent int64   `yaml:"budget_min_concurrent"`
}

// Failure kinds for RouteRetry.OnErrors.
const (
	RetryOnConnect = "connect"
	RetryOnTimeout = "timeout"
	RetryOnRefused = "refused"
)

func (rr *RouteRetry) validate() error {
	for _, code := range rr.OnStatus {
		switch {
		case code == http.StatusNotImplemented || code == http.StatusHTTPVersionNotSupported:
			return fmt.Errorf("on_status %d: the same request fails the same way everywhere, never retried", code)
		case code != http.StatusRequestTimeout && code != http.StatusTooManyRequests && (code < 500 || code > 599):
			return fmt.Errorf("on_status %d: only 408, 429 and 5xx may be retried", code)
		}
	}
	for _, kind := range rr.OnErrors {
		if kind != RetryOnConnect && kind != RetryOnTimeout && kind != RetryOnRefused {
			return fmt.Errorf("on_errors %q: want connect, timeout or refused", kind)
		}
	}
	if rr.TimeoutRateBound < 0 || rr.TimeoutRateBound > 1 {
		return errors.New("timeout_rate_bound must be in [0,1]")
	}
	return nil
}

// Middleware names.
const (
	MWTier           = "tier"
	MWBBR            = "bbr"
	MWDegrade        = "degrade"
	MWRateLimit      = "ratelimit"
	MWBreaker        = "breaker"
	MWDynamicTimeout = "dynamic_timeout"
	MWRetry          = "retry"
)

var allMiddlewares = []string{MWTier, MWBBR, MWDegrade, MWRateLimit, MWBreaker, MWDynamicTimeout, MWRetry}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ParseConfig decodes a YAML document strictly: unknown fields are errors,
// so a typo cannot silently disable a protection.
func ParseConfig(r io.Reader) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return c, errors.New("gateway: config is empty")
		}
		return c, fmt.Errorf("gateway: config: %w", err)
	}
	return c, c.Validate()
}

// LoadConfig reads and parses a YAML file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gateway: %w", err)
	}
	return ParseConfig(bytes.NewReader(b))
}

// enabled reports whether route rc runs middleware mw.
func (rc *RouteConfig) enabled(mw string) bool {
	if len(rc.Middlewares) > 0 {
		return slices.Contains(rc.Middlewares, mw)
	}
	switch mw {
	case MWRateLimit:
		return rc.RateLimit != nil
	case MWDynamicTimeout:
		return rc.Timeout.Thwm > 0
	case MWRetry:
		return !rc.Retry.Disabled
	}
	return true
}

// Validate checks the parts that need no construction: names, prefixes,
// tiers, middleware lists and plan references. The primitives validate their
// own settings in New, which wraps their errors with the route name.
func (c *Config) Validate() error {
	if len(c.Routes) == 0 {
		return errors.New("gateway: config has no routes")
	}
	names := map[string]bool{}
	prefixes := map[string]string{}
	for i := range c.Routes {
		rc := &c.Routes[i]
		where := fmt.Sprintf("gateway: routes[%d] (%q)", i, rc.Name)
		switch {
		case !namePattern.MatchString(rc.Name):
			return fmt.Errorf("%s: name must match %s", where, namePattern)
		case names[rc.Name]:
			return fmt.Errorf("%s: duplicate route name", where)
		case !strings.HasPrefix(rc.Prefix, "/"):
			return fmt.Errorf("%s: prefix must start with /", where)
		case prefixes[rc.Prefix] != "":
			return fmt.Errorf("%s: prefix %q already used by route %q", where, rc.Prefix, prefixes[rc.Prefix])
		case rc.Service == "":
			return fmt.Errorf("%s: service is required", where)
		case rc.Tier < 1 || rc.Tier > 4:
			return fmt.Errorf("%s: tier must be 1–4, got %d", where, rc.Tier)
		case len(rc.Local.Instances) == 0:
			return fmt.Errorf("%s: local.instances is required", where)
		case rc.Remote != nil && len(rc.Remote.Instances) == 0:
			return fmt.Errorf("%s: remote.instances is required when remote is set", where)
		case rc.Budget < 0 || rc.Local.Timeout < 0 || rc.Remote != nil && rc.Remote.Timeout < 0:
			return fmt.Errorf("%s: budget and timeouts must not be negative", where)
		case c.RetryAfter < 0:
			return errors.New("gateway: retry_after must not be negative")
		case rc.MaxConcurrent < 0:
			return fmt.Errorf("%s: max_concurrent must not be negative", where)
		}
		for _, mw := range rc.Middlewares {
			if !slices.Contains(allMiddlewares, mw) {
				return fmt.Errorf("%s: unknown middleware %q (want one of %v)", where, mw, allMiddlewares)
			}
		}
		if rc.enabled(MWRateLimit) && rc.RateLimit == nil {
			return fmt.Errorf("%s: middleware ratelimit needs a ratelimit section", where)
		}
		if rc.enabled(MWDynamicTimeout) && rc.Timeout.Thwm == 0 {
			return fmt.Errorf("%s: middleware dynamic_timeout needs timeout.thwm and timeout.tmax", where)
		}
		if err := rc.Retry.validate(); err != nil {
			return fmt.Errorf("%s: retry: %w", where, err)
		}
		names[rc.Name] = true
		prefixes[rc.Prefix] = rc.Name
	}
	routes := map[string]*RouteConfig{}
	for i := range c.Routes {
		routes[c.Routes[i].Name] = &c.Routes[i]
	}
	plans := map[string]bool{}
	for i := range c.Plans {
		p := &c.Plans[i]
		where := fmt.Sprintf("gateway: plans[%d] (%q)", i, p.Name)
		if !namePattern.MatchString(p.Name) || plans[p.Name] {
			return fmt.Errorf("%s: name must be unique and match %s", where, namePattern)
		}
		plans[p.Name] = true
		if err := p.validate(routes); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}
