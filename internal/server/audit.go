package server

import (
	"context"
	"log/slog"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
)

// codeName is a gRPC code as google.rpc.Code spells it (CANCELLED, not Canceled).
func codeName(c codes.Code) string { return code.Code(c).String() }

const msgAuditUnavailable = "audit log unavailable: the request was not completed and nothing was revealed"

// audit appends the event of one request (or stream message) and waits until it is
// durable. When it fails, the caller must return the error it returns instead of its
// response (UNAVAILABLE): nothing leaves without its audit record.
func (s *Server) audit(ctx context.Context, op string, rec *audit.Record, err error) error {
	reason := ""
	if err != nil {
		reason = status.Convert(err).Message()
	}
	ev := rec.Event(op, requestID(ctx), codeName(status.Code(err)), reason)
	// A client that goes away does not take the request's event with it: the append
	// outlives the request's context (bounded by the writer's own timeout), but not a
	// unary request's deadline (withAppendDeadline): past it the request fails closed.
	actx := context.WithoutCancel(ctx)
	if d, ok := ctx.Value(appendDeadlineKey{}).(time.Time); ok {
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(actx, d)
		defer cancel()
	}
	if aerr := s.app.Audit.Append(actx, ev); aerr != nil {
		if cerr := callerGone(ctx); cerr != nil {
			// The caller's own deadline or cancellation cut the wait, not an audit
			// outage: the request fails as the caller ended it (CANCELED or
			// DEADLINE_EXCEEDED), reveals nothing, and the event may still commit.
			return toStatus(ctx, s.log, cerr).Err()
		}
		s.log.ErrorContext(ctx, "audit append failed", slog.String("operation", op), slog.String("request_id", requestID(ctx)))
		s.metrics.AuditFailures.Inc()
		return toStatus(ctx, s.log, errs.New(errs.Unavailable, msgAuditUnavailable)).Err()
	}
	return nil
}

// Message implements api.Transport: one message of a stream handled like a unary
// call, with its own record, authorization with the current policy and the caller's
// rate (authorizeMessage), and its own event written before the response is sent.
func (s *Server) Message(ctx context.Context, op string, handle func(context.Context) error) error {
	mctx, rec := messageRecord(ctx)
	mctx, err := s.authorizeMessage(mctx)
	if err == nil {
		err = handle(mctx)
	}
	if err != nil {
		err = toStatus(mctx, s.log, err).Err()
	}
	if aerr := s.audit(mctx, op, rec, err); aerr != nil {
		return aerr
	}
	return err
}

// Status implements api.Transport with toStatus.
func (s *Server) Status(ctx context.Context, err error) *spb.Status {
	return toStatus(ctx, s.log, err).Proto()
}

// IdleTimeout implements api.Transport.
func (s *Server) IdleTimeout() time.Duration { return s.cfg.Limits.StreamIdleTimeout }

// callerGone returns the caller's cancellation or deadline once either has happened:
// ctx.Err(), or DeadlineExceeded from the deadline's instant on (the append's timer and
// the request's may fire in either order).
func callerGone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// appendDeadlineKey carries the time by which a unary call's audit append must end.
type appendDeadlineKey struct{}

// withAppendDeadline bounds the audit append of the request in ctx by deadline, or by
// the client's own deadline when that is earlier. A client that goes away does not
// cancel the append; the deadline does.
func withAppendDeadline(ctx context.Context, deadline time.Time) context.Context {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return context.WithValue(ctx, appendDeadlineKey{}, deadline)
}

// handlerBudget is the share of request_timeout a unary handler gets: the rest is kept
// for its audit append, so that the response (success or failure) leaves within
// request_timeout even while the database link is frozen.
func (s *Server) handlerBudget() time.Duration {
	reserve := min(s.cfg.Audit.WriteTimeout, s.cfg.RequestTimeout/4)
	return s.cfg.RequestTimeout - reserve
}
