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
	requests  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	inFlight  *prometheus.GaugeVec
	shed      *prometheus.CounterVec
	failovers *prometheus.CounterVec
	retries   *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
	panics    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_requests_total", Help: "Requests by route and status class.",
		}, []string{"route", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mercury_gateway_errors_total", Help: "Requests answered with a 5xx, by route.",
		}, []string{"route"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mercury_gateway_request_duration_seconds", Help: "Request latency as seen by the client.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
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
	reg.MustRegister(m.requests, m.errors, m.duration, m.inFlight, m.shed, m.failovers, m.retries, m.fallbacks, m.panics,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// routeMetrics are one route's children, resolved once so the hot path does
// no label lookups.
type routeMetrics struct {
	codes     [6]prometheus.Counter // index status/100
	errors    prometheus.Counter
	duration  prometheus.Observer
	inFlight  prometheus.Gauge
	fallbacks prometheus.Counter
	m         *metrics
	route     string
}

func (m *metrics) forRoute(route string) *routeMetrics {
	rm := &routeMetrics{m: m, route: route,
		errors:    m.errors.WithLabelValues(route),
		duration:  m.duration.WithLabelValues(route),
		inFlight:  m.inFlight.WithLabelValues(route),
		fallbacks: m.fallbacks.WithLabelValues(route),
	}
	for i := range rm.codes {
		rm.codes[i] = m.requests.WithLabelValues(route, strconv.Itoa(i)+"xx")
	}
	return rm
}

func (rm *routeMetrics) observe(status int, seconds float64) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	rm.codes[class].Inc()
	if class == 5 {
		rm.errors.Inc()
	}
	rm.duration.Observe(seconds)
}

func (rm *routeMetrics) shedBy(by string) { rm.m.shed.WithLabelValues(rm.route, by).Inc() }

func (rm *routeMetrics) failover(result string) {
	rm.m.failovers.WithLabelValues(rm.route, result).Inc()
}

func (rm *routeMetrics) localRetry(result string) {
	rm.m.retries.WithLabelValues(rm.route, result).Inc()
}

// gauges registers scrape-time gauges for one route.
func (rm *routeMetrics) gauges(reg prometheus.Registerer, r *route) {
	labels := prometheus.Labels{"route": rm.route}
	if r.window != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mercury_gateway_retry_window",
			Help: "Current cross-region retry window.", ConstLabels: labels},
			func() float64 { return float64(r.window.Stats().Size) }))
	}
	if r.breaker != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mercury_gateway_breaker_state",
			Help: "Breaker state: 0 closed, 1 open, 2 half-open.", ConstLabels: labels},
			func() float64 { return float64(r.breaker.State()) }))
	}
	if r.dyn != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mercury_gateway_dynamic_timeout_seconds",
			Help: "Current EMA dynamic timeout.", ConstLabels: labels},
			func() float64 { return r.dyn.Timeout().Seconds() }))
	}
}
