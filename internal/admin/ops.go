package admin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OpsSources are what the operations metrics read at scrape time: the series the
// alerts in deploy/k8s/components/monitoring watch besides the request metrics.
type OpsSources struct {
	// KeyProviderUp reports whether the key provider passed its last check.
	KeyProviderUp func() bool
	// Checkpoints and CheckpointInterval feed the audit checkpoint lag.
	Checkpoints        CheckpointStatusReader
	CheckpointInterval time.Duration
	// CertExpiry is the expiry of the server certificate in use (nil without TLS).
	CertExpiry func() (time.Time, bool)
	// Cache reports the mapping cache's hits, misses and entries (nil when off).
	Cache func() (hits, misses int64, entries int)
}

// RegisterOps adds the operations metrics. They are computed at scrape time, so no
// request path changes.
func (m *Metrics) RegisterOps(src OpsSources) {
	// Both outcomes exist from the start, so that increase() sees the first failure.
	for _, result := range []string{"ok", "failed"} {
		m.PolicyReloads.WithLabelValues(result)
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "tokenizer", Subsystem: "keys", Name: "provider_up",
		Help: "1 when the key provider passed its last check (Vault reachable, unsealed, login accepted); 0 while requests fail closed.",
	}, func() float64 { return boolGauge(src.KeyProviderUp()) }))
	m.Registry.MustRegister(NewCheckpointCollector(src.Checkpoints, src.CheckpointInterval))
	if src.Cache != nil {
		m.Registry.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "tokenizer", Subsystem: "cache", Name: "hits_total",
				Help: "Mapping lookups answered by the in-process cache."}, func() float64 { h, _, _ := src.Cache(); return float64(h) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "tokenizer", Subsystem: "cache", Name: "misses_total",
				Help: "Mapping lookups the cache sent to the database."}, func() float64 { _, ms, _ := src.Cache(); return float64(ms) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "tokenizer", Subsystem: "cache", Name: "entries",
				Help: "Mappings held by the cache (both indexes)."}, func() float64 { _, _, n := src.Cache(); return float64(n) }),
		)
	}
	if src.CertExpiry != nil {
		m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "tokenizer", Subsystem: "tls", Name: "certificate_expiry_timestamp_seconds",
			Help: "Unix time at which the server certificate in use (tls.cert_file) expires.",
		}, func() float64 {
			t, ok := src.CertExpiry()
			if !ok {
				return 0
			}
			return float64(t.Unix())
		}))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
