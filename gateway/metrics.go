package gateway

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the four golden signals per route — traffic (requests),
// errors, latency (duration) and saturation (in-flight, sheds) — plus the
// resilience figures the admin API also shows.
type metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// Dyed (load-test) traffic has its own series, so a load test does not
	// move the golden signals of real users.
	dyedRequests *prometheus.CounterVec
	dyedErrors   *prometheus.CounterVec
	dyedDuration *prometheus.HistogramVec
	inFlight     *prometheus.GaugeVec
	shed         *prometheus.CounterVec
	failovers    *prometheus.CounterVec
	retries      *prometheus.CounterVec
	fallbacks    *prometheus.CounterVec
	panics       prometheus.Counter
}

var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_requests_total", Help: "Requests (not dyed) by route and status class.",
		}, []string{"route", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_errors_total", Help: "Requests (not dyed) answered with a 5xx, by route.",
		}, []string{"route"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mercury_gateway_request_duration_seconds", Help: "Request latency (not dyed) as seen by the client.",
			Buckets: durationBuckets,
		}, []string{"route"}),
		dyedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_dyed_requests_total", Help: "Dyed (load-test) requests by route and status class.",
		}, []string{"route", "code"}),
		dyedErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_dyed_errors_total", Help: "Dyed (load-test) requests answered with a 5xx, by route.",
		}, []string{"route"}),
		dyedDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mercury_gateway_dyed_request_duration_seconds", Help: "Dyed (load-test) request latency.",
			Buckets: durationBuckets,
		}, []string{"route"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mercury_gateway_in_flight_requests", Help: "Requests being served, by route.",
		}, []string{"route"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_shed_total", Help: "Requests refused locally, by route and middleware.",
		}, []string{"route", "by"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_failovers_total", Help: "Cross-region failovers by route and result (ok, failed, or why none was made).",
		}, []string{"route", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_local_retries_total", Help: "Retries on another local instance by route and result (ok, failed, or why none was made).",
		}, []string{"route", "result"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_degraded_responses_total", Help: "Requests answered by a degradation fallback.",
		}, []string{"route"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mercury_gateway_panics_total", Help: "Panics recovered while serving.",
		}),
	}
	reg.MustRegister(m.requests, m.errors, m.duration, m.dyedRequests, m.dyedErrors, m.dyedDuration, m.inFlight, m.shed, m.failovers, m.retries, m.fallbacks, m.panics,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// routeMetrics are one route's children, resolved once so the hot path does
// no label lookups.
type routeMetrics struct {
	real, dyed signals
	inFlight   prometheus.Gauge
	fallbacks  prometheus.Counter
	m          *metrics
	route      string
}

// signals are the per-request series of one kind of traffic.
type signals struct {
	codes    [6]prometheus.Counter // index status/100
	errors   prometheus.Counter
	duration prometheus.Observer
}

func newSignals(route string, requests, errors *prometheus.CounterVec, duration *prometheus.HistogramVec) signals {
	s := signals{errors: errors.WithLabelValues(route), duration: duration.WithLabelValues(route)}
	for i := range s.codes {
		s.codes[i] = requests.WithLabelValues(route, strconv.Itoa(i)+"xx")
	}
	return s
}

func (m *metrics) forRoute(route string) *routeMetrics {
	return &routeMetrics{m: m, route: route,
		real:      newSignals(route, m.requests, m.errors, m.duration),
		dyed:      newSignals(route, m.dyedRequests, m.dyedErrors, m.dyedDuration),
		inFlight:  m.inFlight.WithLabelValues(route),
		fallbacks: m.fallbacks.WithLabelValues(route),
	}
}

func (rm *routeMetrics) observe(dyed bool, status int, seconds float64) {
	s := &rm.real
	if dyed {
		s = &rm.dyed
	}
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	s.codes[class].Inc()
	if class == 5 {
		s.errors.Inc()
	}
	s.duration.Observe(seconds)
}

func (rm *routeMetrics) shedBy(by string) { rm.m.shed.WithLabelValues(rm.route, by).Inc() }

func (rm *routeMetrics) failover(result string) {
	rm.m.failovers.WithLabelValues(rm.route, result).Inc()
}

func (rm *routeMetrics) localRetry(result string) {
	rm.m.retries.WithLabelValues(rm.route, result).Inc()
}

// gauges registers scrape-time gauges for one route and returns them, so a
// reload that drops the route can unregister them.
func (rm *routeMetrics) gauges(reg prometheus.Registerer, r *route) []prometheus.Collector {
	labels := prometheus.Labels{"route": rm.route}
	var cs []prometheus.Collector
	if r.window != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mercury_gateway_retry_window",
			Help: "Current cross-region retry window.", ConstLabels: labels},
			func() float64 { return float64(r.window.Stats().Size) }))
	}
	if r.breaker != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mercury_gateway_breaker_state",
			Help: "Breaker state: 0 closed, 1 open, 2 half-open.", ConstLabels: labels},
			func() float64 { return float64(r.breaker.State()) }))
	}
	if r.dyn != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mercury_gateway_dynamic_timeout_seconds",
			Help: "Current EMA dynamic timeout.", ConstLabels: labels},
			func() float64 { return r.dyn.Timeout().Seconds() }))
	}
	reg.MustRegister(cs...)
	return cs
}
