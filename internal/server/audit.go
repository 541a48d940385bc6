package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/audit"
)

// codeNames are the gRPC codes as google.rpc.Code spells them.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "UNKNOWN"
}

var errAuditUnavailable = status.Error(codes.Unavailable, "audit log unavailable: the request was not completed and nothing was revealed")

// audit appends the event of one request (or stream message) and waits until it is
// durable. When it fails, the caller must return errAuditUnavailable instead of its
// response: nothing leaves without its audit record.
func (s *Server) audit(ctx context.Context, op string, rec *audit.Record, err error) error {
	reason := ""
	if err != nil {
		reason = status.Convert(err).Message()
	}
	ev := rec.Event(op, requestID(ctx), codeName(status.Code(err)), reason)
	if aerr := s.app.Audit.Append(ctx, ev); aerr != nil {
		s.log.ErrorContext(ctx, "audit append failed", slog.String("operation", op), slog.String("request_id", requestID(ctx)))
		s.metrics.auditFailures.Inc()
		return errAuditUnavailable
	}
	return nil
}

// auditedMessage handles one message of a stream: its own record, its own event,
// written before the response is sent.
func auditedMessage[T any](s *Server, ctx context.Context, op string, handle func(context.Context) (T, error)) (T, error) {
	parent := audit.RecordFrom(ctx)
	parent.Audited = true
	mctx, rec := audit.WithRecord(ctx)
	rec.Caller, rec.ClientAddress = parent.Caller, parent.ClientAddress
	resp, err := handle(mctx)
	if err != nil {
		err = toStatus(mctx, s.log, err).Err()
	}
	if aerr := s.audit(mctx, op, rec, err); aerr != nil {
		var zero T
		return zero, aerr
	}
	return resp, err
}

// countReveals feeds the caller's reveal window; past its threshold it raises a metric
// and writes an anomaly event to the audit log (once per window).
func (s *Server) countReveals(ctx context.Context, n int) {
	pr := principalFrom(ctx)
	crossed, inWindow := s.app.Policies.Current().Revealed(pr, n, time.Now())
	if !crossed {
		return
	}
	s.metrics.anomalies.WithLabelValues(pr.ID).Inc()
	caller := audit.RecordFrom(ctx)
	rec := &audit.Record{Caller: caller.Caller, ClientAddress: caller.ClientAddress, Items: inWindow}
	reason := fmt.Sprintf("revealed %d values within a minute, above the threshold of %d", inWindow, pr.RateLimit.RevealsPerMinute)
	if err := s.app.Audit.Append(ctx, rec.Event("anomaly", requestID(ctx), "OK", reason)); err != nil {
		s.log.ErrorContext(ctx, "anomaly event not written", slog.String("request_id", requestID(ctx)))
	}
	s.log.WarnContext(ctx, "reveal anomaly", slog.String("principal", pr.ID), slog.Int("reveals_in_window", inWindow))
}
