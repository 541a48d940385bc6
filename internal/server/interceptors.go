package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/authn"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
)

// The interceptor chain, the same for every call, every stream and for REST (the
// gateway dials an in-memory gRPC server with the same chain):
//
//	recover → request id → metrics → audit → authenticate → rate limit → deadline (unary) → recover → handler
//
// Audit wraps authentication and the rate limit so that refused requests are audited
// too; it runs after the handler, before the response leaves. The inner recover turns
// a handler's panic into INTERNAL that is audited like any other failure; the outer one
// guards the chain itself. Handlers authorize with policy.Decide (see batch.go).
func (s *Server) chain(internal bool) []grpc.ServerOption {
	outer := []step{s.recoverStep, requestIDStep, s.metricsStep, s.auditStep, s.authenticate(internal), s.rateLimit}
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	for _, st := range outer {
		unary, stream = append(unary, st.unary()), append(stream, st.stream())
	}
	// Streams live as long as their client keeps them; only unary calls get the
	// request deadline.
	unary = append(unary, step(s.deadline).unary(), step(s.recoverStep).unary())
	stream = append(stream, step(s.recoverStep).stream())
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
}

// step is one interceptor, written once for unary calls and streams: it may change the
// context, and calls next (the rest of the chain) or returns an error instead.
type step func(ctx context.Context, method string, next func(context.Context) error) error

func (f step) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var resp any
		err := f(ctx, info.FullMethod, func(ctx context.Context) error {
			var err error
			resp, err = handler(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
}

func (f step) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return f(ss.Context(), info.FullMethod, func(ctx context.Context) error {
			return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
		})
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// operations names the audited RPCs; health and reflection pass through the chain
// without identity, limit or audit.
var operations = map[string]string{
	"/tokenizer.v1.TokenizerService/Tokenize":         "tokenize",
	"/tokenizer.v1.TokenizerService/Detokenize":       "detokenize",
	"/tokenizer.v1.TokenizerService/TokenizeStream":   "tokenize_stream",
	"/tokenizer.v1.TokenizerService/DetokenizeStream": "detokenize_stream",
	"/tokenizer.v1.TokenizerService/DeleteTokens":     "delete_tokens",
	"/tokenizer.v1.TokenizerService/ListClasses":      "list_classes",
	"/tokenizer.v1.AuditService/VerifyAudit":          "verify_audit",
	"/tokenizer.v1.AuditService/ExportAudit":          "export_audit",
	"/tokenizer.v1.AuditService/ListDisclosures":      "list_disclosures",
}

// recoverStep turns a panic into INTERNAL. The panic value is not logged: it could
// hold anything, including a value.
func (s *Server) recoverStep(ctx context.Context, method string, next func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "panic in handler", slog.String("method", method), slog.String("panic_type", fmt.Sprintf("%T", p)))
			s.metrics.panics.Inc()
			err = toStatus(ctx, s.log, errs.New(errs.Internal, "panic")).Err()
		}
	}()
	return next(ctx)
}

type requestIDKey struct{}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// requestID returns the request id in ctx, or "-".
func requestID(ctx context.Context) string {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		return id
	}
	return "-"
}

// requestIDStep takes the caller's x-request-id when it is well-formed (it is echoed
// and logged, so free text is not accepted) or makes one, and returns it in a header.
func requestIDStep(ctx context.Context, _ string, next func(context.Context) error) error {
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-request-id"); len(v) > 0 && requestIDRE.MatchString(v[0]) {
			id = v[0]
		}
	}
	if id == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", id))
	return next(context.WithValue(ctx, requestIDKey{}, id))
}

func (s *Server) metricsStep(ctx context.Context, method string, next func(context.Context) error) error {
	start := time.Now()
	err := next(ctx)
	code := status.Code(err)
	s.metrics.requests.WithLabelValues(method, code.String()).Inc()
	s.metrics.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	s.log.DebugContext(ctx, "request", slog.String("method", method), slog.String("code", code.String()),
		slog.String("request_id", requestID(ctx)), slog.Duration("duration", time.Since(start)))
	return err
}

// auditStep gives the request its record, maps the outcome to a status, and appends
// the request's event before the response leaves. Streams whose messages audit
// themselves get no event here.
func (s *Server) auditStep(ctx context.Context, method string, next func(context.Context) error) error {
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
	if aerr := s.audit(ctx, op, rec, err); aerr != nil {
		return aerr
	}
	return err
}

func (s *Server) deadline(ctx context.Context, method string, next func(context.Context) error) error {
	if _, audited := operations[method]; !audited {
		return next(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	return next(ctx)
}

// identityHeader carries the REST caller's verified identity from the gateway to the
// in-memory gRPC server. Only that server reads it, and the gateway refuses it from
// clients (see headerIn).
const identityHeader = "x-tokenizer-client-identity"

type principalKey struct{}

// principalFrom returns the policy entry of the caller (nil: no entry, denied).
func principalFrom(ctx context.Context) *policy.Principal {
	p, _ := ctx.Value(principalKey{}).(*policy.Principal)
	return p
}

// callerID is the caller's identity for messages (an identity is not PHI).
func callerID(ctx context.Context) string {
	c, _ := policy.CallerFrom(ctx)
	return c.ID
}

// authenticate sets the caller and its policy entry. In insecure mode every caller is
// the dev identity; on the gateway's in-memory server it is the identity the gateway
// verified; otherwise the verified client certificate's.
func (s *Server) authenticate(internal bool) step {
	return func(ctx context.Context, method string, next func(context.Context) error) error {
		if _, audited := operations[method]; !audited {
			return next(ctx)
		}
		id, err := s.identity(ctx, internal)
		addr := clientAddress(ctx)
		rec := audit.RecordFrom(ctx)
		rec.ClientAddress = addr
		if err != nil {
			return err
		}
		rec.Caller = id
		ctx = policy.WithCaller(ctx, policy.Caller{ID: id, Address: addr})
		return next(context.WithValue(ctx, principalKey{}, s.app.Policies.Current().Find(id)))
	}
}

func (s *Server) identity(ctx context.Context, internal bool) (string, error) {
	switch {
	case s.cfg.Insecure:
		return policy.DevIdentity, nil
	case internal:
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(identityHeader); len(v) == 1 && v[0] != "" {
				return v[0], nil
			}
		}
		return "", errs.New(errs.Unauthenticated, "a client certificate is required")
	}
	var st *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			st = &ti.State
		}
	}
	id, err := authn.IdentityOf(st)
	if err != nil {
		return "", errs.New(errs.Unauthenticated, "%s", err.Error())
	}
	return id, nil
}

// rateLimit applies the caller's request rate: RESOURCE_EXHAUSTED with RetryInfo.
func (s *Server) rateLimit(ctx context.Context, method string, next func(context.Context) error) error {
	if _, audited := operations[method]; !audited {
		return next(ctx)
	}
	pr := principalFrom(ctx)
	if ok, wait := s.app.Policies.Current().Allow(pr, time.Now()); !ok {
		s.metrics.rateLimited.WithLabelValues(pr.ID).Inc()
		e := errs.New(errs.ResourceExhausted, "rate limit exceeded; retry later")
		e.RetryAfter = wait
		return e
	}
	return next(ctx)
}

// clientAddress is the original client: the gateway forwards it in x-forwarded-for,
// whose last element is the address the gateway itself saw (earlier ones are whatever
// the client claimed).
func clientAddress(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-forwarded-for"); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			if a := strings.TrimSpace(parts[len(parts)-1]); a != "" && len(a) <= 64 {
				return a
			}
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
