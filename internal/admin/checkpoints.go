package admin

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/phivault/tokenizer/internal/audit"
)

// CheckpointStatusReader is what the checkpoint metrics read of the database.
type CheckpointStatusReader interface {
	AuditHead(ctx context.Context) (int64, []byte, error)
	LastCheckpointSeq(ctx context.Context) (int64, error)
	Checkpoints(ctx context.Context, from, to int64) ([]audit.Checkpoint, error)
}

// CheckpointCollector exports, at each scrape, how far the signed checkpoints trail the
// audit chain, so that an alert fires when events stay unsigned for longer than twice
// the checkpoint interval. The chain is shared by every replica, so every replica
// reports the same values.
type CheckpointCollector struct {
	st       CheckpointStatusReader
	interval time.Duration
	timeout  time.Duration

	lastTime, unsigned, intervalDesc *prometheus.Desc
}

// NewCheckpointCollector returns a collector reading st; interval is the configured
// audit.checkpoint_interval.
func NewCheckpointCollector(st CheckpointStatusReader, interval time.Duration) *CheckpointCollector {
	return &CheckpointCollector{
		st: st, interval: interval, timeout: 2 * time.Second,
		lastTime: prometheus.NewDesc("tokenizer_audit_last_checkpoint_timestamp_seconds",
			"Unix time of the newest signed audit checkpoint (0 when there is none).", nil, nil),
		unsigned: prometheus.NewDesc("tokenizer_audit_unsigned_events",
			"Audit events appended after the newest signed checkpoint.", nil, nil),
		intervalDesc: prometheus.NewDesc("tokenizer_audit_checkpoint_interval_seconds",
			"The configured audit.checkpoint_interval.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *CheckpointCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lastTime
	ch <- c.unsigned
	ch <- c.intervalDesc
}

// Collect implements prometheus.Collector. When the database does not answer, the two
// database-derived series are left out of the scrape rather than reported as zero.
func (c *CheckpointCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.intervalDesc, prometheus.GaugeValue, c.interval.Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	head, _, err := c.st.AuditHead(ctx)
	if err != nil {
		return
	}
	last, err := c.st.LastCheckpointSeq(ctx)
	if err != nil {
		return
	}
	var at float64
	if last > 0 {
		cps, err := c.st.Checkpoints(ctx, last, last)
		if err != nil {
			return
		}
		for _, cp := range cps {
			at = max(at, float64(cp.Time.UnixNano())/1e9)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.lastTime, prometheus.GaugeValue, at)
	ch <- prometheus.MustNewConstMetric(c.unsigned, prometheus.GaugeValue, float64(max(head-last, 0)))
}
