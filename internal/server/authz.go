package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
)

// callerID is the caller's identity for messages (an identity is not PHI).
func callerID(ctx context.Context) string {
	c, _ := policy.CallerFrom(ctx)
	return c.ID
}

// requireOp authorizes a request operation (audit export, verify, disclosures).
func requireOp(ctx context.Context, op string) error {
	if !principalFrom(ctx).Allowed(op) {
		return errs.New(errs.PermissionDenied, "caller %s may not %s", callerID(ctx), op)
	}
	return nil
}

// requireAnyClass refuses the whole request when the caller may do none of ops on any
// class; otherwise items are authorized one by one.
func requireAnyClass(ctx context.Context, verb string, ops ...string) error {
	pr := principalFrom(ctx)
	for _, op := range ops {
		if pr.CanAny(op) {
			return nil
		}
	}
	return errs.New(errs.PermissionDenied, "caller %s may not %s in any class", callerID(ctx), verb)
}

func itemDenied(class, op string) error {
	return errs.New(errs.PermissionDenied, "class %s: caller may not %s", class, op)
}

// permitted authorizes a class operation item by item: it returns the indexes of the
// items the caller may proceed with, and for the others a PERMISSION_DENIED (recorded
// for the audit event). Unknown classes proceed, for the engine to refuse as such.
func (s *Server) permitted(ctx context.Context, rec *audit.Record, classes []string, op string) (allowed []int, denied []error) {
	pr := principalFrom(ctx)
	denied = make([]error, len(classes))
	for i, c := range classes {
		if s.isClass(c) && !pr.Can(c, op) {
			denied[i] = itemDenied(c, op)
			rec.Denied = append(rec.Denied, "class "+c+": "+op)
			continue
		}
		allowed = append(allowed, i)
	}
	return allowed, denied
}

// runAllowed calls the engine with the allowed items only and puts each result back at
// its item's place. With no items at all it still calls, so that the engine refuses
// the empty batch.
func runAllowed[T, R any](items []T, allowed []int, results []R, call func([]T) ([]R, error)) error {
	if len(allowed) == 0 && len(items) > 0 {
		return nil
	}
	sub := make([]T, len(allowed))
	for k, i := range allowed {
		sub[k] = items[i]
	}
	got, err := call(sub)
	if err != nil {
		return err
	}
	for k, i := range allowed {
		results[i] = got[k]
	}
	return nil
}

// authorizePurpose checks the purpose of use against the caller's grants: ETREAT
// (break-glass) needs the break_glass grant and a justification.
func (s *Server) authorizePurpose(ctx context.Context, purpose, justification string) error {
	if purpose == policy.BreakGlass && justification == "" {
		return errs.New(errs.InvalidArgument, "justification: required for break-glass (purpose_of_use ETREAT)")
	}
	if !principalFrom(ctx).MayPurpose(purpose) {
		if purpose == policy.BreakGlass {
			return errs.New(errs.PermissionDenied, "caller %s may not break the glass (ETREAT)", callerID(ctx))
		}
		return errs.New(errs.PermissionDenied, "caller %s may not invoke purpose of use %s", callerID(ctx), purpose)
	}
	return nil
}

// countReveals feeds the caller's reveal window; past its threshold it raises a metric
// and writes an anomaly event to the audit log (once per window).
func (s *Server) countReveals(ctx context.Context, n int) {
	pr := principalFrom(ctx)
	crossed, inWindow := s.policies.Current().Revealed(pr, n, time.Now())
	if !crossed {
		return
	}
	s.metrics.anomalies.WithLabelValues(pr.ID).Inc()
	caller, _ := policy.CallerFrom(ctx)
	ev := &audit.Event{
		Time: time.Now().UTC().Truncate(time.Microsecond), RequestID: requestID(ctx), Caller: caller.ID,
		Operation: "anomaly", Outcome: "OK", ClientAddress: caller.Address, Items: inWindow,
		Reason: fmt.Sprintf("revealed %d values within a minute, above the threshold of %d", inWindow, pr.RateLimit.RevealsPerMinute),
	}
	if err := s.auditSink.Append(ctx, ev); err != nil {
		s.log.ErrorContext(ctx, "anomaly event not written", slog.String("request_id", requestID(ctx)))
	}
	s.log.WarnContext(ctx, "reveal anomaly", slog.String("principal", pr.ID), slog.Int("reveals_in_window", inWindow))
}
