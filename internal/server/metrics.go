package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics live in a private registry under the tokenizer namespace. Labels are bounded:
// method names, status codes, configured class names, operations, outcomes.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	items    *prometheus.CounterVec
	panics   prometheus.Counter
	ready    prometheus.Gauge

	auditFailures prometheus.Counter
	policyReloads *prometheus.CounterVec
	breakGlass    prometheus.Counter
	anomalies     *prometheus.CounterVec
	rateLimited   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokenizer", Subsystem: "grpc", Name: "requests_total",
			Help: "RPCs handled, by method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "tokenizer", Subsystem: "grpc", Name: "request_duration_seconds",
			Help:    "RPC latency, by method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokenizer", Name: "items_total",
			Help: "Items processed, by operation, class and outcome (a status code).",
		}, []string{"operation", "class", "outcome"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tokenizer", Name: "panics_total", Help: "Handler panics recovered.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tokenizer", Name: "ready", Help: "1 when the service is ready to serve.",
		}),
	}
	m.auditFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "tokenizer", Subsystem: "audit", Name: "append_failures_total",
		Help: "Requests failed closed because their audit event could not be written.",
	})
	m.policyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tokenizer", Subsystem: "policy", Name: "reloads_total", Help: "Policy reloads, by result.",
	}, []string{"result"})
	m.breakGlass = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "tokenizer", Name: "break_glass_reveals_total", Help: "Detokenize requests with purpose ETREAT (break-glass) that were allowed.",
	})
	// The principal label is a policy entry's ID: a bounded set from the policy file.
	m.anomalies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tokenizer", Name: "reveal_anomalies_total", Help: "Times a principal revealed more values in a minute than its threshold.",
	}, []string{"principal"})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tokenizer", Name: "rate_limited_total", Help: "Requests refused by a principal's rate limit.",
	}, []string{"principal"})
	m.registry.MustRegister(m.requests, m.duration, m.items, m.panics, m.ready, m.auditFailures,
		m.policyReloads, m.breakGlass, m.anomalies, m.rateLimited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
