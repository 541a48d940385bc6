package server

import (
	"context"
	"sync"
	"time"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
)

// Streams are held to what a unary call is held to (docs/security.md): each message is
// authorized with the policy in force when it arrives and takes one request from the
// caller's rate; a caller holds at most limits.max_streams_per_principal streams at
// once (and a connection at most limits.max_streams_per_connection calls); a stream
// that sends nothing for limits.stream_idle_timeout is closed; and every connection is
// closed after limits.max_connection_age, so that a certificate that expired or left
// the CA bundle stops working within that age plus the request timeout (the grace
// for in-flight calls).

// streamLimit is the stream-only step that bounds the streams a caller holds at once.
func (s *Server) streamLimit(ctx context.Context, method string, next func(context.Context) error) error {
	if _, audited := operations[method]; !audited {
		return next(ctx)
	}
	id := callerID(ctx)
	if !s.streams.Acquire(id, s.cfg.Limits.MaxStreamsPerPrincipal) {
		s.metrics.StreamsRefused.Inc()
		return errs.New(errs.ResourceExhausted, "too many open streams for this caller (limit %d); close one and retry", s.cfg.Limits.MaxStreamsPerPrincipal)
	}
	s.metrics.StreamsOpen.Inc()
	defer func() {
		s.streams.Release(id)
		s.metrics.StreamsOpen.Dec()
	}()
	return next(ctx)
}

// authorizeMessage re-reads the caller's policy entry from the policy in force (a
// principal removed from the policy stops at its next message) and takes one request
// from its rate, like the authenticate and rate-limit steps of a unary call.
func (s *Server) authorizeMessage(ctx context.Context) (context.Context, error) {
	pr := s.app.Policies.Current().Find(callerID(ctx))
	ctx = policy.WithPrincipal(ctx, pr)
	if err := s.limit(pr); err != nil {
		return ctx, err
	}
	return ctx, nil
}

// limit takes one request from the principal's rate, or from the rate shared by every
// caller without a policy entry.
func (s *Server) limit(pr *policy.Principal) error {
	ok, wait := true, time.Duration(0)
	label := "none"
	if pr == nil {
		ok, wait = s.unknown.take(time.Now(), float64(s.cfg.Limits.UnknownRequestsPerSecond))
	} else {
		ok, wait = s.app.Policies.Current().Allow(pr, time.Now())
		label = pr.ID
	}
	if ok {
		return nil
	}
	s.metrics.RateLimited.WithLabelValues(label).Inc()
	e := errs.New(errs.ResourceExhausted, "rate limit exceeded; retry later")
	e.RetryAfter = wait
	return e
}

// sharedBucket is a token bucket (burst: twice the rate) shared by unknown callers, so
// that certificates without a policy entry cannot flood the service or its audit log.
type sharedBucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func (b *sharedBucket) take(now time.Time, rate float64) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	burst := 2 * rate
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// messageRecord is a stream message's audit record, with the stream's caller.
func messageRecord(ctx context.Context) (context.Context, *audit.Record) {
	parent := audit.RecordFrom(ctx)
	parent.Audited = true
	mctx, rec := audit.WithRecord(ctx)
	rec.Caller, rec.ClientAddress, rec.OnBehalfOf = parent.Caller, parent.ClientAddress, parent.OnBehalfOf
	return mctx, rec
}
