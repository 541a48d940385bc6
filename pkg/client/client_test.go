package client_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
	"github.com/phivault/tokenizer/pkg/client"
)

func newDevClient(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(devGRPC, append([]client.Option{client.WithInsecure()}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// retries records the retries a client makes.
type retries struct {
	mu    sync.Mutex
	codes []codes.Code
	delay []time.Duration
}

func (r *retries) policy(attempts int) client.RetryPolicy {
	return client.RetryPolicy{MaxAttempts: attempts, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		OnRetry: func(_ int, c codes.Code, d time.Duration) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.codes = append(r.codes, c)
			r.delay = append(r.delay, d)
		}}
}

func (r *retries) seen() ([]codes.Code, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.codes), slices.Clone(r.delay)
}

// TestDefaultMaxItemsIsServerDefault keeps the client's batch size equal to the
// server's default limits.max_items.
func TestDefaultMaxItemsIsServerDefault(t *testing.T) {
	assert.Equal(t, config.Defaults().Limits.MaxItems, client.DefaultMaxItems)
}

// TestBatchesInInputOrder sends more values than one request carries: results come
// back in input order, a bad value fails only its own item, and every token reveals
// its value.
func TestBatchesInInputOrder(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	count := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		calls.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	c := newDevClient(t, client.WithMaxItems(7), client.WithDialOptions(count))
	var values []client.Value
	for i := range 30 {
		v := fmt.Sprintf("MRN-%08d", 50000000+i)
		if i == 11 {
			v = "MRN-1" // does not fit the pattern
		}
		values = append(values, client.Value{Class: "mrn", Value: v, Reference: fmt.Sprint("r", i)})
	}
	res, err := c.Tokenize(t.Context(), values)
	require.NoError(t, err)
	require.Len(t, res, 30)
	assert.Equal(t, int32(5), calls.Load(), "30 items in requests of 7")
	var tokens []client.Token
	for i, r := range res {
		assert.Equal(t, fmt.Sprint("r", i), r.Reference)
		if i == 11 {
			assert.Equal(t, codes.InvalidArgument, status.Code(r.Err))
			assert.NotContains(t, r.Err.Error(), "MRN-1", "the error never quotes the value")
			tokens = append(tokens, client.Token{Class: "mrn", Token: "MRN-00000000", Reference: r.Reference})
			continue
		}
		require.NoError(t, r.Err)
		assert.Regexp(t, `^MRN-\d{8}$`, r.Token)
		tokens = append(tokens, client.Token{Class: "mrn", Token: r.Token, Reference: r.Reference})
	}
	vals, err := c.Detokenize(t.Context(), client.Operations, tokens)
	require.NoError(t, err)
	require.Len(t, vals, 30)
	for i, v := range vals {
		assert.Equal(t, fmt.Sprint("r", i), v.Reference)
		if i == 11 {
			assert.Equal(t, codes.NotFound, status.Code(v.Err), "unknown token")
			continue
		}
		require.NoError(t, v.Err)
		assert.Equal(t, values[i].Value, v.Value)
	}
	del, err := c.DeleteTokens(t.Context(), []client.Mapping{{Class: "mrn", Token: tokens[0].Token, Reference: "d"}})
	require.NoError(t, err)
	assert.True(t, del[0].Deleted)
	gone, err := c.Detokenize(t.Context(), client.Treatment, tokens[:1])
	require.NoError(t, err)
	assert.Equal(t, codes.NotFound, status.Code(gone[0].Err))
	// Deleting again, twice in one request: nothing to remove, no error.
	again, err := c.DeleteTokens(t.Context(), []client.Mapping{{Class: "mrn", Token: tokens[0].Token}, {Class: "mrn", Token: tokens[0].Token}})
	require.NoError(t, err)
	for _, r := range again {
		assert.NoError(t, r.Err)
		assert.False(t, r.Deleted)
	}
}

// TestStreamsInInputOrder tokenizes and reveals over the streaming RPCs in several
// batches, results in order.
func TestStreamsInInputOrder(t *testing.T) {
	t.Parallel()
	c := newDevClient(t, client.WithMaxItems(3))
	in := []client.Value{}
	for i := range 10 {
		in = append(in, client.Value{Class: "ssn_dynamic", Value: fmt.Sprintf("4%02d-11-22%02d", i, i), Reference: fmt.Sprint(i)})
	}
	in[4].Value = "bad"
	var toks []client.Token
	err := c.TokenizeAll(t.Context(), slices.Values(in), func(r client.TokenizeResult) error {
		toks = append(toks, client.Token{Class: "ssn_dynamic", Token: r.Token, Reference: r.Reference})
		if r.Reference == "4" {
			assert.Equal(t, codes.InvalidArgument, status.Code(r.Err))
		} else {
			assert.NoError(t, r.Err)
		}
		return nil
	})
	require.NoError(t, err)
	require.Len(t, toks, 10)
	toks = slices.Delete(toks, 4, 5)
	var got []string
	err = c.DetokenizeAll(t.Context(), client.Treatment, slices.Values(toks), func(r client.DetokenizeResult) error {
		require.NoError(t, r.Err)
		got = append(got, r.Reference+"="+r.Value)
		return nil
	})
	require.NoError(t, err)
	var want []string
	for i, v := range in {
		if i != 4 {
			want = append(want, v.Reference+"="+v.Value)
		}
	}
	assert.Equal(t, want, got)
}

// TestRevealNeedsPurposeBeforeAnyNetworkCall points a client at a listener that
// counts connections: a reveal without a purpose (or break-glass without a
// justification) fails and nothing connects.
func TestRevealNeedsPurposeBeforeAnyNetworkCall(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conn.Close()
		}
	}()
	c, err := client.New(l.Addr().String(), client.WithInsecure())
	require.NoError(t, err)
	defer c.Close()
	tok := []client.Token{{Class: "ssn", Token: "912-34-5678"}}
	_, err = c.Detokenize(t.Context(), "", tok)
	assert.ErrorIs(t, err, client.ErrNoPurpose)
	err = c.DetokenizeAll(t.Context(), "", slices.Values(tok), func(client.DetokenizeResult) error { return nil })
	assert.ErrorIs(t, err, client.ErrNoPurpose)
	_, err = c.Detokenize(t.Context(), client.EmergencyTreatment, tok)
	assert.ErrorIs(t, err, client.ErrNoJustification)
	assert.Equal(t, int32(0), accepted.Load(), "no connection was made")

	// The same client does connect for a call that may be sent.
	_, _ = c.Detokenize(t.Context(), client.Treatment, tok)
	assert.Positive(t, accepted.Load())
}

func TestNewNeedsTransportSecurity(t *testing.T) {
	_, err := client.New("127.0.0.1:1")
	assert.ErrorContains(t, err, "no transport security chosen")
	_, err = client.New("127.0.0.1:1", client.WithInsecure(), client.WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS13}))
	assert.ErrorContains(t, err, "WithInsecure and WithTLSConfig both set the transport security; choose one")
	_, err = client.New("127.0.0.1:1", client.WithTLSConfig(nil))
	assert.ErrorContains(t, err, "nil configuration")
	_, err = client.New("127.0.0.1:1", client.WithInsecure(), client.WithMaxItems(0))
	assert.ErrorContains(t, err, "WithMaxItems: must be at least 1")
	_, err = client.New("127.0.0.1:1", client.WithTLSFiles("missing.crt", "missing.key", "missing.pem"))
	assert.ErrorContains(t, err, "load client certificate missing.crt")
}

// TestNoRetryOnInvalidArgument: an unknown purpose of use is refused once, not retried.
func TestNoRetryOnInvalidArgument(t *testing.T) {
	t.Parallel()
	var r retries
	c := newDevClient(t, client.WithRetry(r.policy(5)))
	_, err := c.Detokenize(t.Context(), client.Purpose("NOSUCH"), []client.Token{{Class: "ssn", Token: "912-34-5678"}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	got, _ := r.seen()
	assert.Empty(t, got, "no retry")
}

// TestRetryUntilServerStarts begins a call before the server exists: the first attempt
// fails UNAVAILABLE, the retry hook starts the server, and a later attempt succeeds.
func TestRetryUntilServerStarts(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	dir := t.TempDir()
	var r retries
	p := r.policy(200)
	db := pgtest.NewDatabase(t)
	var once sync.Once
	started := make(chan *server, 1)
	hook := p.OnRetry
	p.OnRetry = func(n int, code codes.Code, d time.Duration) {
		hook(n, code, d)
		once.Do(func() {
			go func() {
				s, err := startServer(dir, db, nil, "--dev", "--insecure", "--grpc-addr", addr)
				if err != nil {
					t.Error(err)
				}
				started <- s
			}()
		})
	}
	fast := grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond}})
	c, err := client.New(addr, client.WithInsecure(), client.WithRetry(p), client.WithDialOptions(fast), client.WithTimeout(5*time.Second))
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	res, err := c.Tokenize(ctx, []client.Value{{Class: "ssn", Value: "123-45-6789"}})
	if s := <-started; s != nil {
		defer s.stop()
	}
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	assert.Regexp(t, `^9\d\d-\d\d-\d{4}$`, res[0].Token)
	got, _ := r.seen()
	require.NotEmpty(t, got)
	assert.Equal(t, codes.Unavailable, got[0])
	for _, code := range got {
		assert.Equal(t, codes.Unavailable, code, "only UNAVAILABLE while the server starts")
	}
}

// mtlsServer is a server requiring mTLS with a policy: ehr (certificate CN) and the
// SPIFFE ID spiffe://hospital.example/ehr may tokenize and reveal for TREAT; limited
// may make one request per second.
type mtlsServer struct {
	*server
	ca  *pkitest.CA
	dir string
}

const testPolicy = `principals:
  - id: ehr
    classes: {"*": [tokenize, detokenize]}
    purposes: [TREAT]
  - id: spiffe://hospital.example/ehr
    classes: {"*": [tokenize, detokenize]}
    purposes: [TREAT]
  - id: limited
    classes: {"*": [tokenize]}
    rate_limit: {requests_per_second: 1, burst: 1}
`

func startMTLSServer(t *testing.T) *mtlsServer {
	t.Helper()
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "test CA")
	srv := ca.Issue(t, pkitest.Options{CN: "tokenizer", SPIFFE: "spiffe://hospital.example/tokenizer", Server: true})
	pkitest.Write(t, dir, "server.crt", srv.CertPEM)
	pkitest.Write(t, dir, "server.key", srv.KeyPEM)
	pkitest.Write(t, dir, "ca.pem", ca.PEM)
	pkitest.Write(t, dir, "policy.yaml", []byte(testPolicy))
	s := startTestServer(t, dir, "--dev", "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
		"--tls-client-ca-file", "ca.pem", "--policy-file", "policy.yaml")
	return &mtlsServer{server: s, ca: ca, dir: dir}
}

// clientFiles issues a client certificate for cn and writes it beside the CA.
func (m *mtlsServer) clientFiles(t *testing.T, cn string) (cert, key, ca string) {
	t.Helper()
	leaf := m.ca.Issue(t, pkitest.Options{CN: cn})
	dir := t.TempDir()
	return pkitest.Write(t, dir, cn+".crt", leaf.CertPEM), pkitest.Write(t, dir, cn+".key", leaf.KeyPEM), filepath.Join(m.dir, "ca.pem")
}

// TestMTLS runs the mTLS cases against one server: certificate files, a SPIFFE
// source, no retry on PERMISSION_DENIED, and RESOURCE_EXHAUSTED retried after the
// server's RetryInfo delay.
func TestMTLS(t *testing.T) {
	t.Parallel()
	m := startMTLSServer(t)
	t.Run("files", func(t *testing.T) {
		cert, key, ca := m.clientFiles(t, "ehr")
		c, err := client.New(m.grpc, client.WithTLSFiles(cert, key, ca))
		require.NoError(t, err)
		defer c.Close()
		roundTrip(t, c, "301-22-4444")
	})
	t.Run("spiffe", func(t *testing.T) {
		c, err := client.New(m.grpc, client.WithSPIFFE(m.spiffeSource(t, "spiffe://hospital.example/ehr"),
			spiffeid.RequireFromString("spiffe://hospital.example/tokenizer")))
		require.NoError(t, err)
		defer c.Close()
		roundTrip(t, c, "301-22-5555")

		// The same source refuses a server with another SPIFFE ID.
		other, err := client.New(m.grpc, client.WithSPIFFE(m.spiffeSource(t, "spiffe://hospital.example/ehr"),
			spiffeid.RequireFromString("spiffe://hospital.example/impostor")), client.WithRetry(client.RetryPolicy{MaxAttempts: 1}))
		require.NoError(t, err)
		defer other.Close()
		_, err = other.Tokenize(t.Context(), []client.Value{{Class: "ssn", Value: "301-22-6666"}})
		assert.Equal(t, codes.Unavailable, status.Code(err), "handshake refused: %v", err)
	})
	t.Run("SPIFFE Workload API", func(t *testing.T) {
		src, err := client.NewWorkloadX509Source(t.Context(), startAgent(t, m.ca, "spiffe://hospital.example/ehr"))
		require.NoError(t, err)
		defer src.Close()
		c, err := client.New(m.grpc, client.WithSPIFFE(src, spiffeid.RequireFromString("spiffe://hospital.example/tokenizer")))
		require.NoError(t, err)
		defer c.Close()
		roundTrip(t, c, "301-22-8888")
	})
	t.Run("no retry on PERMISSION_DENIED", func(t *testing.T) {
		cert, key, ca := m.clientFiles(t, "ehr")
		var r retries
		c, err := client.New(m.grpc, client.WithTLSFiles(cert, key, ca), client.WithRetry(r.policy(5)))
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Detokenize(t.Context(), client.Research, []client.Token{{Class: "ssn", Token: "912-34-5678"}})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
		got, _ := r.seen()
		assert.Empty(t, got, "no retry")
	})
	t.Run("RESOURCE_EXHAUSTED honours RetryInfo", func(t *testing.T) {
		cert, key, ca := m.clientFiles(t, "limited")
		var r retries
		c, err := client.New(m.grpc, client.WithTLSFiles(cert, key, ca), client.WithRetry(r.policy(10)))
		require.NoError(t, err)
		defer c.Close()
		for i := range 3 {
			res, err := c.Tokenize(t.Context(), []client.Value{{Class: "ssn", Value: fmt.Sprintf("301-22-700%d", i)}})
			require.NoError(t, err, "call %d", i)
			require.NoError(t, res[0].Err)
		}
		got, delays := r.seen()
		require.NotEmpty(t, got, "one request per second: later calls were refused and retried")
		for i, code := range got {
			assert.Equal(t, codes.ResourceExhausted, code)
			// The policy's 20 ms backoff would never wait this long: the pause is the
			// server's RetryInfo delay (up to a second at one request per second).
			assert.Greater(t, delays[i], 100*time.Millisecond, "retry %d waited for the server's RetryInfo delay", i)
		}
	})
}

func roundTrip(t *testing.T, c *client.Client, ssn string) {
	t.Helper()
	res, err := c.Tokenize(t.Context(), []client.Value{{Class: "ssn", Value: ssn}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	vals, err := c.Detokenize(t.Context(), client.Treatment, []client.Token{{Class: "ssn", Token: res[0].Token}})
	require.NoError(t, err)
	require.NoError(t, vals[0].Err)
	assert.Equal(t, ssn, vals[0].Value)
}

// staticSource is a fixed SPIFFE X.509 source: one SVID and one bundle.
type staticSource struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s staticSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
func (s staticSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle.GetX509BundleForTrustDomain(td)
}

// spiffeSource issues an SVID for id from the test CA, trusted as the bundle of its
// trust domain.
func (m *mtlsServer) spiffeSource(t *testing.T, id string) client.X509Source {
	t.Helper()
	leaf := m.ca.Issue(t, pkitest.Options{CN: "svid", SPIFFE: id})
	sid := spiffeid.RequireFromString(id)
	return staticSource{
		svid:   &x509svid.SVID{ID: sid, Certificates: []*x509.Certificate{leaf.TLS.Leaf}, PrivateKey: leaf.TLS.PrivateKey.(crypto.Signer)},
		bundle: x509bundle.FromX509Authorities(sid.TrustDomain(), []*x509.Certificate{m.ca.Cert}),
	}
}
