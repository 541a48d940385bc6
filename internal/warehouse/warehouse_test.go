package warehouse_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/server"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

const policy = `
principals:
  - id: spiffe://hospital.example/warehouse-gateway
    classes:
      "*": [tokenize, detokenize]
    purposes: [TREAT, HOPERAT]
  - id: mrn-only
    classes:
      mrn: [tokenize]
  - id: nothing-granted
    purposes: [TREAT]
`

// env is a service with mTLS and a policy, and certificates for the callers.
type env struct {
	http   string
	db     string
	ca     *pkitest.CA
	leaves map[string]*pkitest.Leaf
}

func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "warehouse test CA")
	srvLeaf := ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	cfg := config.Defaults()
	cfg.Dev = true
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Database.URL = pgtest.NewDatabase(t)
	cfg.Keys.Provider, cfg.Keys.LocalFile = "local", filepath.Join(dir, "kek.hex")
	cfg.Audit.CheckpointSink = "none"
	cfg.TLS = config.TLSConfig{
		CertFile:     pkitest.Write(t, dir, "server.crt", srvLeaf.CertPEM),
		KeyFile:      pkitest.Write(t, dir, "server.key", srvLeaf.KeyPEM),
		ClientCAFile: pkitest.Write(t, dir, "ca.pem", ca.PEM),
	}
	cfg.PolicyFile = pkitest.Write(t, dir, "policy.yaml", []byte(policy))
	cfg.Classes = config.DefaultClasses()
	cfg.Log.Level, cfg.Log.Format = "info", "json"
	require.NoError(t, cfg.Validate())
	lp, _, err := keys.OpenLocal(cfg.Keys.LocalFile)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Build(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.WithProvider(lp))
	require.NoError(t, err)
	srv, err := server.New(ctx, a)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		err := srv.Run(ctx)
		a.Close()
		done <- err
	}()
	t.Cleanup(func() { cancel(); <-done })
	admin := srv.Addrs().Admin
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond)
	e := &env{http: srv.Addrs().HTTP, db: cfg.Database.URL, ca: ca, leaves: map[string]*pkitest.Leaf{}}
	for _, id := range []string{"spiffe://hospital.example/warehouse-gateway", "mrn-only", "nothing-granted"} {
		o := pkitest.Options{CN: id}
		if strings.HasPrefix(id, "spiffe://") {
			o = pkitest.Options{CN: "gateway", SPIFFE: id}
		}
		l := ca.Issue(t, o)
		e.leaves[id] = &l
	}
	return e
}

const gateway = "spiffe://hospital.example/warehouse-gateway"

// post sends body as the holder of the identity's certificate ("" for none).
func (e *env) post(t *testing.T, identity, path, body string, headers map[string]string) (int, map[string]any, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: pkitest.ClientConfig(e.ca, e.leaves[identity])}, Timeout: 20 * time.Second}
	req, err := http.NewRequest(http.MethodPost, "https://"+e.http+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	return resp.StatusCode, out, string(raw)
}

// events returns the audit log's events, oldest first.
func (e *env) events(t *testing.T) []map[string]any {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), e.db)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), "SELECT body FROM audit_events ORDER BY seq")
	require.NoError(t, err)
	var out []map[string]any
	for rows.Next() {
		var body string
		require.NoError(t, rows.Scan(&body))
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &m))
		out = append(out, m)
	}
	require.NoError(t, rows.Err())
	return out
}

func last(t *testing.T, evs []map[string]any, caller string) map[string]any {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i]["caller"] == caller {
			return evs[i]
		}
	}
	t.Fatalf("no audit event for %s", caller)
	return nil
}
