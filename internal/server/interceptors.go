package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/api"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/authn"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/grpcx"
	"github.com/phivault/tokenizer/internal/policy"
)

// The interceptor chain, the same for every call, every stream and for REST (the
// gateway dials an in-memory gRPC server with the same chain):
//
//	recover → request id → metrics → audit → authenticate → rate limit → deadline (unary) | stream limit (streams) → recover → handler
//
// Audit wraps authentication and the rate limit so that refused requests are audited
// too; it runs after the handler, before the response leaves. The inner recover turns
// a handler's panic into INTERNAL that is audited like any other failure; the outer one
// guards the chain itself. Handlers authorize with policy.Decide (see batch.go).
func (s *Server) chain(internal bool) []grpc.ServerOption {
	outer := func(audit grpcx.Step) []grpcx.Step {
		return []grpcx.Step{s.recoverStep, grpcx.WithRequestID, s.metricsStep, audit, s.authenticate(internal), s.rateLimit}
	}
	// Streams live as long as their client keeps them; only unary calls get the
	// request deadline, which their audit append shares (handlerBudget); stream
	// messages are authorized and limited one by one (Message).
	unary := append(outer(s.auditStepUnary), s.deadline, s.recoverStep)
	stream := append(outer(s.auditStep), s.streamLimit, s.recoverStep)
	return grpcx.Chain(unary, stream)
}

// operations maps every method of the tokenizer.v1 services to its audited operation,
// the method name in snake_case (TokenizeStream: tokenize_stream), so that a new RPC is
// authenticated, limited and audited by default. Health and reflection pass through
// the chain without identity, limit or audit.
var operations = grpcx.Operations(api.Services...)

// recoverStep turns a panic into INTERNAL. The panic value is not logged: it could
// hold anything, including a value.
func (s *Server) recoverStep(ctx context.Context, method string, next func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "panic in handler", slog.String("method", method), slog.String("panic_type", fmt.Sprintf("%T", p)))
			s.metrics.Panics.Inc()
			err = toStatus(ctx, s.log, errs.New(errs.Internal, "panic")).Err()
		}
	}()
	return next(ctx)
}

// requestID returns the request id in ctx, or "-".
func requestID(ctx context.Context) string { return grpcx.RequestID(ctx) }

func (s *Server) metricsStep(ctx context.Context, method string, next func(context.Context) error) error {
	start := time.Now()
	err := next(ctx)
	code := status.Code(err)
	s.metrics.Requests.WithLabelValues(method, code.String()).Inc()
	s.metrics.Duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	s.log.DebugContext(ctx, "request", slog.String("method", method), slog.String("code", code.String()),
		slog.String("request_id", requestID(ctx)), slog.Duration("duration", time.Since(start)))
	return err
}

// auditStep gives the request its record, maps the outcome to a status, and appends
// the request's event before the response leaves. Streams whose messages audit
// themselves get no event here.
func (s *Server) auditStep(ctx context.Context, method string, next func(context.Context) error) error {
	return s.auditWithin(ctx, method, time.Time{}, next)
}

// auditStepUnary is auditStep for a unary call: the request, its audit append
// included, ends within request_timeout of its start (deadlineBudget).
func (s *Server) auditStepUnary(ctx context.Context, method string, next func(context.Context) error) error {
	return s.auditWithin(ctx, method, time.Now().Add(s.cfg.RequestTimeout), next)
}

func (s *Server) auditWithin(ctx context.Context, method string, deadline time.Time, next func(context.Context) error) error {
	op, audited := operations[method]
	if !audited {
		return next(ctx)
	}
	ctx, rec := audit.WithRecord(ctx)
	err := next(ctx)
	if err != nil {
		err = toStatus(ctx, s.log, err).Err()
	}
	if rec.Audited {
		return err
	}
	if !deadline.IsZero() {
		ctx = withAppendDeadline(ctx, deadline)
	}
	if aerr := s.audit(ctx, op, rec, err); aerr != nil {
		return aerr
	}
	return err
}

func (s *Server) deadline(ctx context.Context, method string, next func(context.Context) error) error {
	if _, audited := operations[method]; !audited {
		return next(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, s.handlerBudget())
	defer cancel()
	return next(ctx)
}

// callerID is the caller's identity for messages (an identity is not PHI).
func callerID(ctx context.Context) string {
	c, _ := policy.CallerFrom(ctx)
	return c.ID
}

// authenticate sets the caller (authn.Identity) and its policy entry.
func (s *Server) authenticate(internal bool) grpcx.Step {
	return func(ctx context.Context, method string, next func(context.Context) error) error {
		if _, audited := operations[method]; !audited {
			if strings.HasPrefix(method, "/grpc.reflection.") && !s.cfg.Insecure {
				// Reflection (when enabled) describes the API only to certified clients.
				if _, err := authn.Identity(ctx, false, internal); err != nil {
					return toStatus(ctx, s.log, err).Err()
				}
			}
			return next(ctx)
		}
		id, err := authn.Identity(ctx, s.cfg.Insecure, internal)
		addr := authn.ClientAddressFrom(ctx, internal, s.trusted)
		rec := audit.RecordFrom(ctx)
		rec.ClientAddress = addr
		rec.OnBehalfOf = grpcx.OnBehalfOf(ctx)
		if err != nil {
			return err
		}
		rec.Caller = id
		ctx = policy.WithCaller(ctx, policy.Caller{ID: id, Address: addr})
		return next(policy.WithPrincipal(ctx, s.app.Policies.Current().Find(id)))
	}
}

// rateLimit applies the caller's request rate: RESOURCE_EXHAUSTED with RetryInfo.
func (s *Server) rateLimit(ctx context.Context, method string, next func(context.Context) error) error {
	if _, audited := operations[method]; !audited {
		return next(ctx)
	}
	if err := s.limit(policy.PrincipalFrom(ctx)); err != nil {
		return err
	}
	return next(ctx)
}
