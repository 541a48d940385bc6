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

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/policy"
)

// The interceptor chain, the same for every call and for REST (the gateway dials an
// in-memory gRPC server with the same chain): recover → request id → metrics → audit →
// authenticate (and rate limit) → handler, which authorizes per item or per request.
// Audit wraps authentication and authorization so that refused requests are audited
// too, and it runs after the handler, before the response leaves.

type requestIDKey struct{}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// requestID returns the request id in ctx, or "-".
func requestID(ctx context.Context) string {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		return id
	}
	return "-"
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// withRequestID takes the caller's x-request-id when it is well-formed (it is echoed
// and logged, so free text is not accepted) or makes one, and returns it in a header.
func withRequestID(ctx context.Context) context.Context {
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-request-id"); len(v) > 0 && requestIDRE.MatchString(v[0]) {
			id = v[0]
		}
	}
	if id == "" {
		id = newRequestID()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", id))
	return context.WithValue(ctx, requestIDKey{}, id)
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

// authenticate sets the caller and its policy entry, and applies its rate limit. In
// insecure mode every caller is the dev identity.
func (s *Server) authenticate(ctx context.Context, internal bool) (context.Context, error) {
	var id string
	switch {
	case s.cfg.Insecure:
		id = policy.DevIdentity
	case internal:
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(identityHeader); len(v) == 1 {
				id = v[0]
			}
		}
		if id == "" {
			return ctx, status.Error(codes.Unauthenticated, "a client certificate is required")
		}
	default:
		p, ok := peer.FromContext(ctx)
		var st *tls.ConnectionState
		if ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
				st = &ti.State
			}
		}
		var err error
		if id, err = identityOf(st); err != nil {
			return ctx, status.Error(codes.Unauthenticated, err.Error())
		}
	}
	ctx = policy.WithCaller(ctx, policy.Caller{ID: id, Address: clientAddress(ctx)})
	pol := s.policies.Current()
	pr := pol.Find(id)
	ctx = context.WithValue(ctx, principalKey{}, pr)
	if ok, wait := pol.Allow(pr, time.Now()); !ok {
		s.metrics.rateLimited.WithLabelValues(pr.ID).Inc()
		st := status.New(codes.ResourceExhausted, "rate limit exceeded; retry later")
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
			st = d
		}
		return ctx, st.Err()
	}
	return ctx, nil
}

// recovered turns a panic into Internal. The panic value is not logged: it could hold
// anything, including a value.
func (s *Server) recovered(ctx context.Context, method string, p any) error {
	s.log.ErrorContext(ctx, "panic in handler", slog.String("method", method), slog.String("panic_type", fmt.Sprintf("%T", p)))
	s.metrics.panics.Inc()
	return status.Error(codes.Internal, "internal error; see the server log for request "+requestID(ctx))
}

func (s *Server) unaryInterceptor(internal bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		ctx = withRequestID(ctx)
		defer func() {
			if p := recover(); p != nil {
				resp, err = nil, s.recovered(ctx, info.FullMethod, p)
			}
			s.observe(ctx, info.FullMethod, err, start)
		}()
		op, audited := operations[info.FullMethod]
		if !audited {
			return handler(ctx, req) // health: no caller identity needed
		}
		ctx, rec := audit.WithRecord(ctx)
		ctx, err = s.authenticate(ctx, internal)
		if err == nil {
			tctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			resp, err = handler(tctx, req)
			cancel()
		}
		if err != nil {
			resp, err = nil, toStatus(ctx, s.log, err).Err()
		}
		if aerr := s.audit(ctx, op, rec, err); aerr != nil {
			return nil, aerr
		}
		return resp, err
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

func (s *Server) streamInterceptor(internal bool) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		start := time.Now()
		ctx := withRequestID(ss.Context())
		defer func() {
			if p := recover(); p != nil {
				err = s.recovered(ctx, info.FullMethod, p)
			}
			s.observe(ctx, info.FullMethod, err, start)
		}()
		op, audited := operations[info.FullMethod]
		if !audited {
			return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx}) // reflection, health watch
		}
		ctx, rec := audit.WithRecord(ctx)
		ctx, err = s.authenticate(ctx, internal)
		if err == nil {
			err = handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
		}
		if err != nil {
			err = toStatus(ctx, s.log, err).Err()
		}
		// Messages audit themselves; a stream that failed before any did, or that made
		// none, gets one event here.
		if !rec.Audited {
			if aerr := s.audit(ctx, op, rec, err); aerr != nil {
				return aerr
			}
		}
		return err
	}
}

func (s *Server) observe(ctx context.Context, method string, err error, start time.Time) {
	code := status.Code(err)
	s.metrics.requests.WithLabelValues(method, code.String()).Inc()
	s.metrics.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	s.log.DebugContext(ctx, "request", slog.String("method", method), slog.String("code", code.String()),
		slog.String("request_id", requestID(ctx)), slog.Duration("duration", time.Since(start)))
}
