// Package grpcx is the gRPC plumbing the server composes, free of the service's own
// rules: an interceptor written once for unary calls and streams (a Step) and their
// chain, the request id, operation names from service descriptors, a codec that lets
// invalid UTF-8 reach the audit step, and stream helpers (idle receive, per-caller
// counts).
package grpcx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Step is one interceptor: it may change the context, and calls next (the rest of the
// chain and the handler) or returns an error instead. method is the full gRPC method.
type Step func(ctx context.Context, method string, next func(context.Context) error) error

// Unary is the step as a unary interceptor.
func (f Step) Unary() grpc.UnaryServerInterceptor {
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

// Stream is the step as a stream interceptor: it runs once per stream, and the
// stream's context is the one the step passes on.
func (f Step) Stream() grpc.StreamServerInterceptor {
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

// Chain returns the server options of a chain: unary steps for unary calls, stream
// steps for streams, outermost first.
func Chain(unary, stream []Step) []grpc.ServerOption {
	u := make([]grpc.UnaryServerInterceptor, len(unary))
	for i, s := range unary {
		u[i] = s.Unary()
	}
	st := make([]grpc.StreamServerInterceptor, len(stream))
	for i, s := range stream {
		st[i] = s.Stream()
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(u...), grpc.ChainStreamInterceptor(st...)}
}

type requestIDKey struct{}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// RequestID returns the request id in ctx, or "-".
func RequestID(ctx context.Context) string {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		return id
	}
	return "-"
}

// ParseRequestID returns raw when it is a well-formed request id (as a client may
// send in x-request-id), else a new one: for requests answered outside the chain.
func ParseRequestID(raw string) string {
	if requestIDRE.MatchString(raw) {
		return raw
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WithRequestID is the step that takes the caller's x-request-id when it is
// well-formed (it is echoed and logged, so free text is not accepted) or makes one, and
// returns it in a header.
func WithRequestID(ctx context.Context, _ string, next func(context.Context) error) error {
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

// Operations maps every method of the services ("/pkg.Service/Method") to an operation
// name: the method name in snake_case (TokenizeStream: tokenize_stream).
func Operations(services ...grpc.ServiceDesc) map[string]string {
	out := map[string]string{}
	add := func(svc, name string) {
		var b strings.Builder
		for i, r := range name {
			if unicode.IsUpper(r) && i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
		}
		out["/"+svc+"/"+name] = b.String()
	}
	for _, sd := range services {
		for _, m := range sd.Methods {
			add(sd.ServiceName, m.MethodName)
		}
		for _, st := range sd.Streams {
			add(sd.ServiceName, st.StreamName)
		}
	}
	return out
}

// OnBehalfOfKey names the end user a caller acts for (a warehouse's session user,
// an EHR's clinician); the audit event records it as the caller asserted it. REST
// callers send it as the X-Tokenizer-On-Behalf-Of header.
const OnBehalfOfKey = "x-tokenizer-on-behalf-of"

// maxOnBehalfOf bounds what an event records of it.
const maxOnBehalfOf = 256

// OnBehalfOf reads OnBehalfOfKey: percent-decoded (gRPC metadata is ASCII: other text
// comes percent-encoded as UTF-8, EncodeOnBehalfOf), valid UTF-8, control characters
// removed, at most maxOnBehalfOf bytes (cut at a character boundary).
func OnBehalfOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(OnBehalfOfKey)
	if len(v) == 0 {
		return ""
	}
	raw := v[0]
	if dec, err := url.PathUnescape(raw); err == nil {
		raw = dec // a value that is no valid escape (100% Corp) is taken as it is
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(raw, "\uFFFD"))
	s = strings.TrimSpace(s)
	for len(s) > maxOnBehalfOf {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// EncodeOnBehalfOf writes s for OnBehalfOfKey: bytes outside printable ASCII, and %,
// percent-encoded, so that any UTF-8 text travels as gRPC metadata (OnBehalfOf decodes).
func EncodeOnBehalfOf(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
