package grpcx_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/phivault/tokenizer/internal/grpcx"
)

type key struct{}

// serve starts a health server with the chain and returns a client connection.
func serve(t *testing.T, unary, stream []grpcx.Step) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer(grpcx.Chain(unary, stream)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestStepsRunInOrderForUnaryAndStreams(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var trace []string
	add := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		trace = append(trace, s)
	}
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(trace)
	}
	tag := func(name string) grpcx.Step {
		return func(ctx context.Context, method string, next func(context.Context) error) error {
			add(name + ">" + method[strings.LastIndex(method, "/")+1:])
			err := next(context.WithValue(ctx, key{}, name))
			add(name + "<")
			return err
		}
	}
	conn := serve(t, []grpcx.Step{tag("a"), tag("b")}, []grpcx.Step{tag("s")})
	hc := healthpb.NewHealthClient(conn)
	_, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a>Check", "b>Check", "b<", "a<"}, got())

	mu.Lock()
	trace = nil
	mu.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = w.Recv()
	require.NoError(t, err)
	cancel()
	require.Eventually(t, func() bool { return len(got()) == 2 }, 5e9, 1e7)
	assert.Equal(t, []string{"s>Watch", "s<"}, got())
}

func TestStepErrorStopsTheChain(t *testing.T) {
	t.Parallel()
	refuse := func(context.Context, string, func(context.Context) error) error { return errors.New("refused") }
	called := false
	after := func(ctx context.Context, _ string, next func(context.Context) error) error {
		called = true
		return next(ctx)
	}
	conn := serve(t, []grpcx.Step{refuse, after}, nil)
	_, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused")
	assert.False(t, called)
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	seenCh := make(chan string, 1)
	record := func(ctx context.Context, _ string, next func(context.Context) error) error {
		seenCh <- grpcx.RequestID(ctx)
		return next(ctx)
	}
	conn := serve(t, []grpcx.Step{grpcx.WithRequestID, record}, nil)
	hc := healthpb.NewHealthClient(conn)
	tests := []struct {
		name, sent string
		kept       bool
	}{
		{"well-formed is kept", "req-123.abc:x_y", true},
		{"free text is replaced", "not allowed / spaces", false},
		{"too long is replaced", strings.Repeat("a", 65), false},
		{"missing is made", "", false},
	}
	for _, tt := range tests {
		ctx := t.Context()
		if tt.sent != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", tt.sent)
		}
		var header metadata.MD
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header))
		require.NoError(t, err, tt.name)
		seen := <-seenCh
		require.Len(t, header.Get("x-request-id"), 1, tt.name)
		assert.Equal(t, seen, header.Get("x-request-id")[0], "%s: the header returns the id in use", tt.name)
		if tt.kept {
			assert.Equal(t, tt.sent, seen, tt.name)
		} else {
			assert.Regexp(t, `^[0-9a-f]{24}$`, seen, tt.name)
		}
	}
	assert.Equal(t, "-", grpcx.RequestID(context.Background()))
}

func TestOperations(t *testing.T) {
	t.Parallel()
	ops := grpcx.Operations(healthpb.Health_ServiceDesc)
	assert.Equal(t, map[string]string{
		"/grpc.health.v1.Health/Check": "check",
		"/grpc.health.v1.Health/List":  "list",
		"/grpc.health.v1.Health/Watch": "watch",
	}, ops)
}

// The on-behalf-of metadata is recorded as text: valid UTF-8, no control characters,
// at most 256 bytes cut at a character boundary; absent is empty.
func TestOnBehalfOf(t *testing.T) {
	in := func(v ...string) context.Context {
		md := metadata.MD{}
		for _, s := range v {
			md.Append(grpcx.OnBehalfOfKey, s)
		}
		return metadata.NewIncomingContext(context.Background(), md)
	}
	assert.Equal(t, "", grpcx.OnBehalfOf(context.Background()))
	assert.Equal(t, "dr. Ana Núñez", grpcx.OnBehalfOf(in(" dr. Ana\n Núñez\x00 ")))
	assert.Equal(t, "a\uFFFDb", grpcx.OnBehalfOf(in("a\xffb")))
	assert.Equal(t, "first", grpcx.OnBehalfOf(in("first", "second")))
	long := grpcx.OnBehalfOf(in(strings.Repeat("é", 200)))
	assert.Len(t, long, 256)
	assert.True(t, utf8.ValidString(long))
}

// Names in any script travel percent-encoded and come back as they were; a value that
// is no valid escape is taken as it is.
func TestOnBehalfOfEncoding(t *testing.T) {
	in := func(v string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(grpcx.OnBehalfOfKey, v))
	}
	for _, name := range []string{"José Müller", "山田太郎", "bigquery session user ana@example.org", "100% Corp"} {
		enc := grpcx.EncodeOnBehalfOf(name)
		assert.False(t, strings.ContainsFunc(enc, func(c rune) bool { return c < 0x20 || c > 0x7e }), "printable ASCII: %q", enc)
		assert.Equal(t, name, grpcx.OnBehalfOf(in(enc)))
	}
	assert.Equal(t, "100% Corp", grpcx.OnBehalfOf(in("100% Corp")), "not an escape: as it is")
	assert.Equal(t, "ab", grpcx.OnBehalfOf(in(grpcx.EncodeOnBehalfOf("a\x01\nb"))), "control characters removed after decoding")
	assert.Equal(t, "a\uFFFDb", grpcx.OnBehalfOf(in(grpcx.EncodeOnBehalfOf("a\xffb"))))
}
