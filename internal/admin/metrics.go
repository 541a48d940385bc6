package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics live in a private registry under the tokenizer namespace. Labels are bounded:
// method names, status codes, configured class names, operations, outcomes, policy
// entry IDs; never values or callers' free text.
type Metrics struct {
	Registry *prometheus.Registry
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec
	Items    *prometheus.CounterVec
	Panics   prometheus.Counter
	Ready    prometheus.Gauge

	AuditFailures prometheus.Counter
	PolicyReloads *prometheus.CounterVec
	BreakGlass    prometheus.Counter
	Anomalies     *prometheus.CounterVec
	RateLimited   *prometheus.CounterVec
	// SecurityMode is 1 for the effective mode (mtls, insecure-dev, insecure).
	SecurityMode   *prometheus.GaugeVec
	StreamsOpen    prometheus.Gauge
	StreamsRefused prometheus.Counter
	// CoalescedCalls and CoalescedItems describe each token-vault statement of a
	// coalesced operation: how many requests' calls (1: it went alone) and how many
	// items it carried.
	CoalescedCalls *prometheus.HistogramVec
	CoalescedItems *prometheus.HistogramVec
	// AuditBatchEvents and AuditBatchSeconds describe each group commit of the audit
	// writer: the events it carried and how long its transaction took.
	AuditBatchEvents  prometheus.Histogram
	AuditBatchSeconds prometheus.Histogram
}

// NewMetrics registers the service's metrics, with the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokenizer", Subsystem: "grpc", Name: "requests_total",
			Help: "RPCs handled, by method and status code.",
		}, []string{"method", "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "tokenizer", Subsystem: "grpc", Name: "request_duration_seconds",
			Help:    "RPC latency, by method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method"}),
		Items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokenizer", Name: "items_total",
			Help: "Items processed, by operation, class and outcome (a status code).",
		}, []string{"operation", "class", "outcome"}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tokenizer", Name: "panics_total", Help: "Handler panics recovered.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tokenizer", Name: "ready", Help: "1 when the service is ready to serve.",
		}),
	}
	m.AuditFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "tokenizer", Subsystem: "audit", Name: "append_failures_total",
		Help: "Requests failed closed because their audit event could not be written.",
	})
	m.PolicyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tokenizer", Subsystem: "policy", Name: "reloads_total", Help: "Policy reloads, by result.",
	}, []string{"result"})
	m.BreakGlass = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "tokenizer", Name: "break_glass_reveals_total", Help: "Detokenize requests with purpose ETREAT (break-glass) that were allowed.",
	})
	// The principal label is a policy entry's ID: a bounded set from the policy file.
	m.Anomalies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tokenizer", Name: "reveal_anomalies_total", Help: "Times a principal revealed more values in a minute than its threshold.",
	}, []string{"principal"})
	m.RateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tokenizer", Name: "rate_limited_total", Help: "Requests refused by a principal's rate limit.",
	}, []string{"principal"})
	m.SecurityMode = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "tokenizer", Name: "security_mode", Help: "1 for the effective security mode: mtls, insecure-dev or insecure.",
	}, []string{"mode"})
	m.StreamsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "tokenizer", Name: "streams_open", Help: "Streams open now.",
	})
	m.StreamsRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "tokenizer", Name: "streams_refused_total", Help: "Streams refused because the caller held too many.",
	})
	m.CoalescedCalls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "tokenizer", Subsystem: "coalesce", Name: "calls_per_statement",
		Help:    "Calls carried by one token-vault statement of a coalesced operation (1: the call went alone), by store operation.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	}, []string{"operation"})
	m.CoalescedItems = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "tokenizer", Subsystem: "coalesce", Name: "items_per_statement",
		Help:    "Items in one token-vault statement of a coalesced operation, by store operation.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
	}, []string{"operation"})
	m.AuditBatchEvents = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "tokenizer", Subsystem: "audit", Name: "batch_events",
		Help:    "Events in one audit group commit (one transaction).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
	})
	m.AuditBatchSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "tokenizer", Subsystem: "audit", Name: "batch_seconds",
		Help:    "Time one audit group commit took, from taking its events to the commit's answer.",
		Buckets: []float64{.00025, .0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, 1},
	})
	m.Registry.MustRegister(m.CoalescedCalls, m.CoalescedItems, m.AuditBatchEvents, m.AuditBatchSeconds)
	m.Registry.MustRegister(m.Requests, m.Duration, m.Items, m.Panics, m.Ready, m.AuditFailures,
		m.PolicyReloads, m.BreakGlass, m.Anomalies, m.RateLimited, m.SecurityMode, m.StreamsOpen, m.StreamsRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
