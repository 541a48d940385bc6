package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/policy"
)

// The interceptor chain, the same for every call and for REST (the gateway dials the
// gRPC port): recover → request id → metrics → audit → authenticate → handler. Audit
// wraps authentication (and authorization) so that refused requests are audited too,
// and it runs after the handler, before the response leaves.

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

// clientAddress is the original client: the gateway forwards it in x-forwarded-for.
func clientAddress(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-forwarded-for"); len(v) > 0 && len(v[0]) <= 256 {
			return v[0]
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// authenticate sets the caller. In insecure mode every caller is the dev identity;
// mTLS identities come with the authentication issue.
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	return policy.WithCaller(ctx, policy.Caller{ID: policy.DevIdentity, Address: clientAddress(ctx)}), nil
}

// recovered turns a panic into Internal. The panic value is not logged: it could hold
// anything, including a value.
func (s *Server) recovered(ctx context.Context, method string, p any) error {
	s.log.ErrorContext(ctx, "panic in handler", slog.String("method", method), slog.String("panic_type", fmt.Sprintf("%T", p)))
	s.metrics.panics.Inc()
	return status.Error(codes.Internal, "internal error; see the server log for request "+requestID(ctx))
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	ctx = withRequestID(ctx)
	defer func() {
		if p := recover(); p != nil {
			err = s.recovered(ctx, info.FullMethod, p)
		}
		s.observe(ctx, info.FullMethod, err, start)
	}()
	ctx, rec := audit.WithRecord(ctx)
	op, audited := operations[info.FullMethod]
	ctx, err = s.authenticate(ctx)
	if err == nil {
		tctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		resp, err = handler(tctx, req)
		cancel()
	}
	if err != nil {
		resp, err = nil, toStatus(ctx, s.log, err).Err()
	}
	if audited {
		if aerr := s.audit(ctx, op, rec, err); aerr != nil {
			return nil, aerr
		}
	}
	return resp, err
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	ctx := withRequestID(ss.Context())
	defer func() {
		if p := recover(); p != nil {
			err = s.recovered(ctx, info.FullMethod, p)
		}
		s.observe(ctx, info.FullMethod, err, start)
	}()
	ctx, rec := audit.WithRecord(ctx)
	op, audited := operations[info.FullMethod]
	ctx, err = s.authenticate(ctx)
	if err == nil {
		err = handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	}
	if err != nil {
		err = toStatus(ctx, s.log, err).Err()
	}
	// Messages audit themselves; a stream that failed before any did, or that made
	// none, gets one event here.
	if audited && !rec.Audited {
		if aerr := s.audit(ctx, op, rec, err); aerr != nil {
			return aerr
		}
	}
	return err
}

func (s *Server) observe(ctx context.Context, method string, err error, start time.Time) {
	code := status.Code(err)
	s.metrics.requests.WithLabelValues(method, code.String()).Inc()
	s.metrics.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	s.log.DebugContext(ctx, "request", slog.String("method", method), slog.String("code", code.String()),
		slog.String("request_id", requestID(ctx)), slog.Duration("duration", time.Since(start)))
}
