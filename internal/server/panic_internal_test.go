package server

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

// panicky is a tokenizer service whose Tokenize panics, with a value-like payload.
type panicky struct {
	tokenizerv1.UnimplementedTokenizerServiceServer
}

func (panicky) Tokenize(context.Context, *tokenizerv1.TokenizeRequest) (*tokenizerv1.TokenizeResponse, error) {
	panic("123-45-6789")
}

// Issue 10, finding 3: a panic in a handler is answered INTERNAL and audited like any
// other failure (the inner recover step runs inside the audit step), over real TLS
// with the service's own chain and audit writer on PostgreSQL.
func TestHandlerPanicIsAudited(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "test CA")
	srvLeaf := ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	client := ca.Issue(t, pkitest.Options{CN: "ehr", SPIFFE: "spiffe://hospital.example/ehr"})
	cfg := config.Defaults()
	cfg.Dev = true
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Database.URL = pgtest.NewDatabase(t)
	cfg.Keys.Provider, cfg.Keys.LocalFile = "local", filepath.Join(dir, "kek.hex")
	cfg.Audit.CheckpointSink = "none"
	cfg.Log.Format = "json"
	cfg.Classes = config.DefaultClasses()
	cfg.TLS = config.TLSConfig{CertFile: pkitest.Write(t, dir, "s.crt", srvLeaf.CertPEM), KeyFile: pkitest.Write(t, dir, "s.key", srvLeaf.KeyPEM), ClientCAFile: pkitest.Write(t, dir, "ca.pem", ca.PEM)}
	cfg.PolicyFile = pkitest.Write(t, dir, "policy.yaml", []byte("principals:\n  - id: spiffe://hospital.example/ehr\n    classes: {ssn: [tokenize]}\n"))
	require.NoError(t, cfg.Validate())
	logs := &lockedWriter{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	lp, _, err := keys.OpenLocal(cfg.Keys.LocalFile)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := app.Build(ctx, cfg, log, app.WithProvider(lp))
	require.NoError(t, err)
	s, err := New(ctx, a)
	require.NoError(t, err)
	go func() { _ = s.Run(ctx); a.Close() }()
	require.Eventually(t, func() bool { return a.NotReady(ctx) == "" }, 30*time.Second, 50*time.Millisecond)

	// The service's chain around a handler that panics.
	g := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(s.certs.Config("h2")))}, s.chain(false)...)...)
	tokenizerv1.RegisterTokenizerServiceServer(g, panicky{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(ca, &client))))
	require.NoError(t, err)
	defer conn.Close()
	_, err = tokenizerv1.NewTokenizerServiceClient(conn).Tokenize(ctx, &tokenizerv1.TokenizeRequest{})
	require.Equal(t, codes.Internal, status.Code(err))

	var found *audit.Row
	require.NoError(t, a.Store.ReadAudit(ctx, 1, 0, func(r audit.Row) error {
		if r.Operation == "tokenize" && strings.Contains(r.Body, `"outcome":"INTERNAL"`) {
			found = &r
		}
		return nil
	}))
	require.NotNil(t, found, "the panicked request has its audit event")
	assert.Equal(t, "spiffe://hospital.example/ehr", found.Caller)
	assert.NotContains(t, logs.String(), "123-45-6789", "the panic value is not logged")
}

// lockedWriter serializes writes from many goroutines and reads of what they wrote.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
