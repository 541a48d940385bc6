package server

import (
	"context"
	"log/slog"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/gateway"
	"github.com/phivault/tokenizer/internal/policy"
)

// auditRejection appends the audit event of a REST request the gateway refused before
// it reached gRPC (bad JSON, an unknown field, a body over the limit, a method the
// route does not serve), shaped like every other event: the route's operation, the
// caller of the verified client certificate (dev in insecure mode, unauthenticated
// without a certificate), the outcome and the caller-safe reason.
func (s *Server) auditRejection(ctx context.Context, rej gateway.Rejection) error {
	op, ok := operations[rej.Method]
	if !ok {
		op = "rest_request"
	}
	caller := rej.Caller
	if s.cfg.Insecure {
		caller = policy.DevIdentity
	}
	rec := &audit.Record{Caller: caller, ClientAddress: rej.ClientAddress}
	ev := rec.Event(op, rej.RequestID, codeName(rej.Code), rej.Reason)
	s.metrics.Requests.WithLabelValues(rej.Method, rej.Code.String()).Inc()
	if err := s.app.Audit.Append(context.WithoutCancel(ctx), ev); err != nil {
		s.log.ErrorContext(ctx, "audit append failed", slog.String("operation", op), slog.String("request_id", rej.RequestID))
		s.metrics.AuditFailures.Inc()
		return err
	}
	return nil
}
