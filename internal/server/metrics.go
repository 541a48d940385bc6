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
	m.registry.MustRegister(m.requests, m.duration, m.items, m.panics, m.ready, m.auditFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
