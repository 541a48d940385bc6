package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/server"
	"github.com/phivault/tokenizer/internal/testutil/netproxy"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/vaulttest"
	"github.com/phivault/tokenizer/internal/tokenizer"
	"github.com/phivault/tokenizer/internal/vault"
)

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	dbURL   string
	keyFile string
	classes []tokenizer.ClassConfig
	logs    *syncBuffer
	mutate  func(*config.Config)
	// vaultAddr, when set, makes the server use the Vault provider at that address.
	vaultAddr string
	// tls, when set, serves mTLS with these files; client is the TLS of r.conn.
	tls    *tlsFiles
	client *tls.Config
}

type tlsFiles struct{ cert, key, ca, policy string }

func newEnv(t testing.TB) *env {
	return &env{dbURL: pgtest.NewDatabase(t), keyFile: filepath.Join(t.TempDir(), "kek.hex"), logs: &syncBuffer{}}
}

type running struct {
	addrs  server.Addrs
	cancel context.CancelFunc
	done   chan error
	conn   *grpc.ClientConn
}

func (r *running) tokenizer() tokenizerv1.TokenizerServiceClient {
	return tokenizerv1.NewTokenizerServiceClient(r.conn)
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop")
	}
	r.conn.Close()
}

// start runs a server in this process on free ports; waitReady makes it wait for /readyz.
func (e *env) start(t testing.TB, waitReady bool, opts ...app.Option) *running {
	t.Helper()
	cfg := config.Defaults()
	cfg.Dev = true
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Database.URL = e.dbURL
	cfg.Database.ConnectTimeout = 2 * time.Second
	cfg.Keys.Provider, cfg.Keys.LocalFile = "local", e.keyFile
	cfg.Keys.CheckInterval, cfg.Keys.ReloadInterval = 100*time.Millisecond, 200*time.Millisecond
	cfg.Audit.CheckpointSink = "none"
	cfg.Insecure = e.tls == nil
	if e.tls != nil {
		cfg.TLS = config.TLSConfig{CertFile: e.tls.cert, KeyFile: e.tls.key, ClientCAFile: e.tls.ca}
		cfg.PolicyFile = e.tls.policy
	}
	if e.vaultAddr != "" {
		cfg.Keys.Provider = "vault"
		cfg.Keys.Vault = vault.Config{Address: e.vaultAddr, Token: vaulttest.RootToken, Timeout: time.Second, MaxRetries: 1}
	}
	cfg.Log.Level, cfg.Log.Format = "debug", "json"
	cfg.Classes = e.classes
	if len(cfg.Classes) == 0 {
		cfg.Classes = config.DefaultClasses()
	}
	if e.mutate != nil {
		e.mutate(cfg)
	}
	require.NoError(t, cfg.Validate())
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var p keys.Provider
	if cfg.Keys.Provider == "vault" {
		vc, err := vault.New(cfg.Keys.Vault, log)
		require.NoError(t, err)
		t.Cleanup(vc.Close)
		p = vault.NewProvider(vc)
	} else {
		lp, _, err := keys.OpenLocal(cfg.Keys.LocalFile)
		require.NoError(t, err)
		p = lp
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Build(ctx, cfg, log, append([]app.Option{app.WithProvider(p)}, opts...)...)
	require.NoError(t, err)
	srv, err := server.New(ctx, a)
	require.NoError(t, err)
	r := &running{addrs: srv.Addrs(), cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := srv.Run(ctx)
		a.Close()
		r.done <- err
	}()
	creds := insecure.NewCredentials()
	if e.client != nil {
		creds = credentials.NewTLS(e.client)
	}
	r.conn, err = grpc.NewClient(r.addrs.GRPC, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		r.conn.Close()
	})
	if waitReady {
		require.Eventually(t, func() bool { return r.readyz() == http.StatusOK }, 30*time.Second, 50*time.Millisecond, "server not ready")
	}
	return r
}

func (r *running) readyz() int {
	resp, err := http.Get("http://" + r.addrs.Admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rest posts body to the gateway and returns the status and decoded JSON.
func (r *running) rest(t *testing.T, path, body string) (int, map[string]any, string) {
	t.Helper()
	resp, err := http.Post("http://"+r.addrs.HTTP+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, string(raw)
}

var ssnTokenRE = regexp.MustCompile(`^9\d\d-\d\d-\d{4}$`)

func TestEndToEndGRPCThenREST(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	ctx := t.Context()

	resp, err := r.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "123-45-6789", Reference: "a"},
		{Class: "ssn", Value: "234567890", Reference: "b"},
	}})
	require.NoError(t, err)
	require.Len(t, resp.Results, 2)
	a, b := resp.Results[0], resp.Results[1]
	require.Nil(t, a.Error)
	require.Nil(t, b.Error)
	assert.Equal(t, "a", a.Reference)
	assert.Regexp(t, ssnTokenRE, a.Token, "dashed value gives a dashed 9xx token")
	assert.Regexp(t, `^9\d{8}$`, b.Token, "undashed value gives an undashed token")

	body := fmt.Sprintf(`{"purpose_of_use":"TREAT","items":[{"class":"ssn","token":%q,"reference":"r1"},{"class":"ssn","token":%q,"reference":"r2"}]}`, a.Token, b.Token)
	code, out, raw := r.rest(t, "/v1/detokenize", body)
	require.Equal(t, http.StatusOK, code, raw)
	// Byte-exact: the gateway's output is compact and stable across builds.
	assert.Equal(t, `{"results":[{"reference":"r1","value":"123-45-6789"},{"reference":"r2","value":"234567890"}]}`, raw)
	assert.Len(t, out["results"], 2)

	// camelCase is accepted on input too.
	code, _, raw = r.rest(t, "/v1/detokenize", fmt.Sprintf(`{"purposeOfUse":"TREAT","items":[{"class":"ssn","token":%q}]}`, a.Token))
	require.Equal(t, http.StatusOK, code, raw)
	assert.Contains(t, raw, `"value":"123-45-6789"`)

	// Static: the same value again gets the same token.
	again, err := r.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}})
	require.NoError(t, err)
	assert.Equal(t, a.Token, again.Results[0].Token)
}

func TestBatchWithInvalidItems(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mutate = func(c *config.Config) { c.Limits.MaxValueBytes = 64 }
	r := e.start(t, true)
	secret := "987-65-432X"
	long := strings.Repeat("7", 65)
	resp, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "123-45-6789", Reference: "ok1"},
		{Class: "ssn", Value: secret, Reference: "bad-format"},
		{Class: "ssn", Value: "", Reference: "empty"},
		{Class: "nope", Value: "123-45-6789", Reference: "unknown-class"},
		{Class: "123-45-6789", Value: "123-45-6789", Reference: "value-in-class"},
		{Class: "ssn", Value: long, Reference: "too-long"},
		{Class: "ssn", Value: "000-12-3456", Reference: "never-issued"},
		{Class: "ssn", Value: "345-67-8901", Reference: "ok2"},
	}})
	require.NoError(t, err)
	got := map[string]*tokenizerv1.TokenizeResult{}
	for _, res := range resp.Results {
		got[res.Reference] = res
	}
	for _, ref := range []string{"ok1", "ok2"} {
		assert.Nil(t, got[ref].Error, ref)
		assert.Regexp(t, ssnTokenRE, got[ref].Token, ref)
	}
	for ref, want := range map[string]string{
		"bad-format":     "class ssn",
		"empty":          "value: required",
		"unknown-class":  "class nope: unknown",
		"value-in-class": "unknown class",
		"too-long":       "exceed the limit of 64",
		"never-issued":   "class ssn",
	} {
		res := got[ref]
		require.NotNil(t, res.Error, ref)
		assert.Equal(t, int32(codes.InvalidArgument), res.Error.Code, ref)
		assert.Contains(t, res.Error.Message, want, ref)
		assert.Empty(t, res.Token, ref)
		for _, v := range []string{secret, long, "123-45-6789", "000-12-3456", "987-65", "12-3456"} {
			assert.NotContains(t, res.Error.Message, v, "%s: error echoes input", ref)
		}
	}
	// Nothing was stored for the refused items: exactly two mappings exist.
	dump := pgtest.Dump(t, e.dbURL)
	assert.Equal(t, 2, strings.Count(dump, "(ssn,"), "rows in the token vault")
}

func TestRESTBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mutate = func(c *config.Config) { c.Limits.MaxItems = 3 }
	r := e.start(t, true)
	secret := "321-54-9876"

	tests := []struct {
		name, path, body, want string
		code                   int
	}{
		{"malformed JSON", "/v1/tokenize", `{"items":[{"class":"ssn","value":"` + secret + `"`, "not valid JSON", 400},
		{"wrong type", "/v1/tokenize", `{"items":[{"class":"ssn","value":` + strings.ReplaceAll(secret, "-", "") + `}]}`, "not valid JSON", 400},
		{"unknown field", "/v1/tokenize", `{"itemz":[{"class":"ssn","value":"` + secret + `"}]}`, `unknown field \"itemz\"`, 400},
		{"no purpose", "/v1/detokenize", `{"items":[{"class":"ssn","token":"912-34-5678"}]}`, "purpose_of_use", 400},
		{"unknown purpose", "/v1/detokenize", `{"purpose_of_use":"` + secret + `","items":[{"class":"ssn","token":"912-34-5678"}]}`, "purpose_of_use", 400},
		{"too many items", "/v1/tokenize", `{"items":[{"class":"ssn","value":"` + secret + `"},{"class":"ssn","value":"1"},{"class":"ssn","value":"2"},{"class":"ssn","value":"3"}]}`, "exceed the limit of 3", 400},
		{"no items", "/v1/tokenize", `{"items":[]}`, "at least one item", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, raw := r.rest(t, tt.path, tt.body)
			assert.Equal(t, tt.code, code, raw)
			assert.Contains(t, raw, tt.want)
			assert.NotContains(t, raw, secret)
			assert.NotContains(t, raw, strings.ReplaceAll(secret, "-", ""))
		})
	}
	// The same refusals over gRPC carry INVALID_ARGUMENT.
	_, err := r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: "912-34-5678"}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestTokensSurviveRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	resp, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "456-78-9012"},
		{Class: "mrn", Value: "MRN-00012345"},
	}})
	require.NoError(t, err)
	r.stop(t)

	r2 := e.start(t, true)
	out, err := r2.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{
		{Class: "ssn", Token: resp.Results[0].Token},
		{Class: "mrn", Token: resp.Results[1].Token},
	}})
	require.NoError(t, err)
	assert.Equal(t, "456-78-9012", out.Results[0].Value)
	assert.Equal(t, "MRN-00012345", out.Results[1].Value)

	// A static class gives the same token after the restart.
	again, err := r2.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "mrn", Value: "MRN-00012345"}}})
	require.NoError(t, err)
	assert.Equal(t, resp.Results[1].Token, again.Results[0].Token)
}

// throughProxy routes the environment's database connections through a proxy the test
// can freeze and thaw.
func (e *env) throughProxy(t *testing.T) *netproxy.Proxy {
	t.Helper()
	u, err := url.Parse(e.dbURL)
	require.NoError(t, err)
	proxy := netproxy.New(t, u.Host)
	u.Host = proxy.Addr()
	e.dbURL = u.String()
	return proxy
}

func TestDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy := e.throughProxy(t)
	r := e.start(t, true)

	tok, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "111-22-3333"}}})
	require.NoError(t, err)

	proxy.Down()
	assert.Equal(t, http.StatusServiceUnavailable, r.readyz())
	for _, call := range []func(ctx context.Context) error{
		func(ctx context.Context) error {
			_, err := r.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "111-22-3333"}}})
			return err
		},
		func(ctx context.Context) error {
			_, err := r.tokenizer().Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}})
			return err
		},
	} {
		// The client deadline is far beyond the connect timeout: a hang would show as
		// DeadlineExceeded, not Unavailable.
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		err := call(ctx)
		cancel()
		require.Error(t, err)
		assert.Equal(t, codes.Unavailable, status.Code(err), err)
		assert.NotContains(t, err.Error(), "111-22-3333")
	}

	proxy.Up()
	require.Eventually(t, func() bool { return r.readyz() == http.StatusOK }, 20*time.Second, 100*time.Millisecond)
	out, err := r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}})
	require.NoError(t, err)
	assert.Equal(t, "111-22-3333", out.Results[0].Value)
}

func TestStartWithoutDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, err := url.Parse(e.dbURL)
	require.NoError(t, err)
	proxy := netproxy.New(t, u.Host)
	proxy.Down()
	u.Host = proxy.Addr()
	e.dbURL = u.String()
	r := e.start(t, false)

	require.Eventually(t, func() bool { return r.readyz() == http.StatusServiceUnavailable }, 10*time.Second, 50*time.Millisecond)
	_, err = r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "111-22-3333"}}})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	h, err := healthpb.NewHealthClient(r.conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, h.Status)

	proxy.Up()
	require.Eventually(t, func() bool { return r.readyz() == http.StatusOK }, 30*time.Second, 100*time.Millisecond)
	h, err = healthpb.NewHealthClient(r.conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "tokenizer.v1.TokenizerService"})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, h.Status)
}

func TestNoValuesInLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	const value = "867-53-0999"
	const mrn = "MRN-86753099"
	resp, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: value}, {Class: "mrn", Value: mrn},
		{Class: "mrn", Value: value}, {Class: value, Value: value},
	}})
	require.NoError(t, err)
	token := resp.Results[0].Token
	_, err = r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Justification: "follow-up", Items: []*tokenizerv1.DetokenizeItem{
		{Class: "ssn", Token: token}, {Class: "mrn", Token: resp.Results[1].Token}, {Class: "ssn", Token: value},
	}})
	require.NoError(t, err)
	r.rest(t, "/v1/tokenize", `{"items":[{"class":"ssn","value":"`+value+`"}`)
	r.rest(t, "/v1/detokenize", `{"purpose_of_use":"`+value+`","items":[{"class":"ssn","token":"`+token+`"}]}`)
	r.stop(t)

	logs := e.logs.String()
	require.Contains(t, logs, `"msg":"request"`, "debug request logs were captured")
	for _, s := range []string{value, "867530999", mrn, "86753099", token, resp.Results[1].Token} {
		assert.NotContains(t, logs, s)
	}
}

func TestStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	ctx := t.Context()
	ts, err := r.tokenizer().TokenizeStream(ctx)
	require.NoError(t, err)
	values := []string{"123-45-6781", "123-45-6782", "123-45-6783"}
	var tokens []string
	for _, v := range values {
		require.NoError(t, ts.Send(&tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: v}}}))
		resp, err := ts.Recv()
		require.NoError(t, err)
		tokens = append(tokens, resp.Results[0].Token)
	}
	require.NoError(t, ts.CloseSend())
	_, err = ts.Recv()
	assert.ErrorIs(t, err, io.EOF)

	ds, err := r.tokenizer().DetokenizeStream(ctx)
	require.NoError(t, err)
	for i, tok := range tokens {
		require.NoError(t, ds.Send(&tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok}}}))
		resp, err := ds.Recv()
		require.NoError(t, err)
		assert.Equal(t, values[i], resp.Results[0].Value)
	}
	require.NoError(t, ds.CloseSend())
}

func TestDeleteAndListClasses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	ctx := t.Context()
	resp, err := r.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "222-33-4444"}, {Class: "mrn", Value: "MRN-11112222"},
	}})
	require.NoError(t, err)
	del, err := r.tokenizer().DeleteTokens(ctx, &tokenizerv1.DeleteTokensRequest{Items: []*tokenizerv1.DeleteItem{
		{Class: "ssn", Token: resp.Results[0].Token, Reference: "by-token"},
		{Class: "mrn", Value: "MRN-11112222", Reference: "by-value"},
		{Class: "ssn_dynamic", Value: "222-33-4444", Reference: "dynamic-by-value"},
	}})
	require.NoError(t, err)
	assert.True(t, del.Results[0].Deleted)
	assert.True(t, del.Results[1].Deleted)
	assert.Equal(t, int32(codes.InvalidArgument), del.Results[2].Error.GetCode())

	out, err := r.tokenizer().Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{
		{Class: "ssn", Token: resp.Results[0].Token}, {Class: "mrn", Token: resp.Results[1].Token},
	}})
	require.NoError(t, err)
	for _, res := range out.Results {
		assert.Equal(t, int32(codes.NotFound), res.Error.GetCode())
		assert.Empty(t, res.Value)
	}

	list, err := r.tokenizer().ListClasses(ctx, &tokenizerv1.ListClassesRequest{})
	require.NoError(t, err)
	byName := map[string]*tokenizerv1.TokenClass{}
	for _, c := range list.Classes {
		byName[c.Name] = c
	}
	require.Len(t, byName, len(config.DefaultClasses()))
	assert.Equal(t, "static", byName["ssn"].Mode)
	assert.Equal(t, "random", byName["ssn"].Generator)
	assert.True(t, byName["ssn"].Distinguishable)
	assert.Equal(t, "fpe", byName["ssn_fpe"].Generator)
	assert.False(t, byName["ssn_fpe"].Distinguishable)
	assert.Equal(t, "dynamic", byName["ssn_dynamic"].Mode)
	assert.Equal(t, "MRN-99999999", byName["mrn"].Format)

	resp2, err := http.Get("http://" + r.addrs.HTTP + "/v1/classes")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	assert.Equal(t, http.StatusOK, resp2.StatusCode)
	assert.Contains(t, string(body), `"name":"mrn"`)
}

func TestAdminAndOpenAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	_, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "555-66-7777"}}})
	require.NoError(t, err)

	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("http://" + r.addrs.Admin + "/metrics")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `tokenizer_grpc_requests_total{code="OK",method="/tokenizer.v1.TokenizerService/Tokenize"} 1`)
	assert.Contains(t, body, `tokenizer_items_total{class="ssn",operation="tokenize",outcome="OK"} 1`)
	assert.NotContains(t, body, "555-66-7777")
	code, _ = get("http://" + r.addrs.Admin + "/healthz")
	assert.Equal(t, 200, code)
	code, body = get("http://" + r.addrs.HTTP + "/openapi.json")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `"/v1/tokenize"`)
	assert.Contains(t, body, `"/v1/detokenize"`)

	// Every request so far is in the audit chain, which verifies.
	v, err := tokenizerv1.NewAuditServiceClient(r.conn).VerifyAudit(t.Context(), &tokenizerv1.VerifyAuditRequest{})
	require.NoError(t, err)
	assert.True(t, v.Ok, v.Reason)
	assert.GreaterOrEqual(t, v.EventsChecked, int64(1))
}
