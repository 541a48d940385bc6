package server

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/phivault/tokenizer/internal/audit"
)

// registerOpsMetrics adds the series that the alerts in deploy/k8s/components/monitoring
// read besides the request metrics: key provider up, audit checkpoint lag, and the
// server certificate's expiry. They are computed at scrape time from state the server
// already keeps, so no request path changes.
func (s *Server) registerOpsMetrics() {
	m := s.metrics
	// Both outcomes exist from the start, so that increase() sees the first failure.
	for _, result := range []string{"ok", "failed"} {
		m.policyReloads.WithLabelValues(result)
	}
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "tokenizer", Subsystem: "keys", Name: "provider_up",
		Help: "1 when the key provider passed its last check (Vault reachable, unsealed, login accepted); 0 while requests fail closed.",
	}, s.keyProviderUp))
	m.registry.MustRegister(audit.NewCheckpointCollector(s.store, s.cfg.Audit.CheckpointInterval))
	if s.certs != nil {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "tokenizer", Subsystem: "tls", Name: "certificate_expiry_timestamp_seconds",
			Help: "Unix time at which the server certificate in use (tls.cert_file) expires.",
		}, s.certExpiry))
	}
}

// keyProviderUp reads the monitor's verdict once the service is up; while it is still
// starting, it checks the provider itself.
func (s *Server) keyProviderUp() float64 {
	if s.engine.Load() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if s.provider.Check(ctx) != nil {
			return 0
		}
		return 1
	}
	if s.keysDown.Load() {
		return 0
	}
	return 1
}

// certExpiry is the NotAfter of the certificate served now (reloaded ones included).
func (s *Server) certExpiry() float64 {
	cert, _ := s.certs.current()
	if cert == nil || len(cert.Certificate) == 0 {
		return 0
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return 0
		}
	}
	return float64(leaf.NotAfter.Unix())
}
