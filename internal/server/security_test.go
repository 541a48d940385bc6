package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

// The regression tests of issue 10 (an independent security review), one or more per
// finding, over real TLS and PostgreSQL.

// startTLSWith is startTLS with its own policy and settings.
func startTLSWith(t *testing.T, policyYAML string, mutate func(*config.Config)) *pki {
	t.Helper()
	p := &pki{ca: pkitest.NewCA(t, "tokenizer test CA"), other: pkitest.NewCA(t, "someone else's CA"), dir: t.TempDir()}
	srv := p.ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	ehr := p.ca.Issue(t, pkitest.Options{CN: "ehr", SPIFFE: "spiffe://hospital.example/ehr"})
	p.env = newEnv(t)
	p.env.tls = &tlsFiles{
		cert:   pkitest.Write(t, p.dir, "server.crt", srv.CertPEM),
		key:    pkitest.Write(t, p.dir, "server.key", srv.KeyPEM),
		ca:     pkitest.Write(t, p.dir, "clients-ca.pem", p.ca.PEM),
		policy: pkitest.Write(t, p.dir, "policy.yaml", []byte(policyYAML)),
	}
	p.env.mutate = mutate
	p.env.client = pkitest.ClientConfig(p.ca, &ehr)
	p.r = p.env.start(t, true)
	return p
}

// conn connects as the holder of leaf.
func (p *pki) conn(t *testing.T, leaf *pkitest.Leaf) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(p.r.addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(p.ca, leaf))))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func metricsText(t *testing.T, r *running) string {
	t.Helper()
	resp, err := http.Get("http://" + r.addrs.Admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// streamsOpen reads the tokenizer_streams_open gauge.
func streamsOpen(t *testing.T, r *running) int {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, r), "\n") {
		if v, ok := strings.CutPrefix(line, "tokenizer_streams_open "); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no tokenizer_streams_open metric")
	return 0
}

const securityPolicy = `
principals:
  - id: spiffe://hospital.example/ehr
    classes:
      "*": [tokenize, detokenize, delete]
    operations: [audit_export, audit_verify, disclosures]
    purposes: [TREAT]
    break_glass: true
  - id: enumerator
    classes:
      ssn: [tokenize]
    rate_limit: {new_values_per_minute: 30, enumeration_per_minute: 10}
  - id: harvester
    classes:
      ssn: [detokenize]
    purposes: [TREAT]
    rate_limit: {reveals_per_minute: 100000, misses_per_minute: 50}
  - id: streamer
    classes:
      ssn: [tokenize, detokenize]
    purposes: [TREAT]
    rate_limit: {requests_per_second: 1, burst: 3}
  - id: leaver
    classes:
      ssn: [tokenize, detokenize]
    purposes: [TREAT]
  - id: mrn-only
    classes:
      mrn: [tokenize]
`

// Finding 1: tokenize on a static class is an oracle. A tokenize quota of new values
// per minute and an enumeration anomaly bound it; detokenize misses count toward the
// reveal window and raise a harvest anomaly.
func TestStaticTokenOracleControls(t *testing.T) {
	t.Parallel()
	p := startTLSWith(t, securityPolicy, nil)
	ctx := t.Context()
	enum := p.client(t, p.leaf(t, "enumerator", ""))
	batch := func(from, n int) *tokenizerv1.TokenizeRequest {
		req := &tokenizerv1.TokenizeRequest{}
		for i := range n {
			req.Items = append(req.Items, &tokenizerv1.TokenizeItem{Class: "ssn", Value: fmt.Sprintf("123-45-%04d", from+i+1)})
		}
		return req
	}
	// 25 new values: allowed (under the quota of 30), above the enumeration threshold.
	resp, err := enum.Tokenize(ctx, batch(0, 25))
	require.NoError(t, err)
	for _, r := range resp.Results {
		require.Nil(t, r.Error)
	}
	// 10 more: the quota had room when the request began (25 < 30).
	_, err = enum.Tokenize(ctx, batch(100, 10))
	require.NoError(t, err)
	// Now 35 ≥ 30: refused until the next minute.
	_, err = enum.Tokenize(ctx, batch(200, 1))
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "tokenize quota used up")
	assert.Contains(t, status.Convert(err).Message(), "quota of 30 new values per minute")

	// 200 guessed, well-formed SSN tokens: the misses count and raise a harvest anomaly.
	harvester := p.client(t, p.leaf(t, "harvester", ""))
	req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT"}
	for i := range 200 {
		req.Items = append(req.Items, &tokenizerv1.DetokenizeItem{Class: "ssn", Token: fmt.Sprintf("987-65-%04d", i)})
	}
	out, err := harvester.Detokenize(ctx, req)
	require.NoError(t, err)
	misses := 0
	for _, r := range out.Results {
		if r.Error.GetCode() == int32(codes.NotFound) {
			misses++
		}
	}
	require.Greater(t, misses, 50, "most guesses miss")

	jsonl := exportJSONL(t, p)
	assert.Contains(t, jsonl, `"reason":"enumeration: 25 new values tokenized within a minute, above the threshold of 10"`)
	assert.Contains(t, jsonl, `"reason":"harvest: `)
	assert.Contains(t, jsonl, `above the threshold of 50"`)
	m := metricsText(t, p.r)
	assert.Contains(t, m, `tokenizer_reveal_anomalies_total{principal="enumerator"} 1`)
	assert.Contains(t, m, `tokenizer_reveal_anomalies_total{principal="harvester"} 1`)
	assert.Contains(t, m, `tokenizer_security_mode{mode="mtls"} 1`, "finding 3: the security mode is a metric")
	assert.Contains(t, p.env.logs.String(), `"security_mode":"mtls"`, "and logged at start")
}

// Finding 1: a policy that combines tokenize and detokenize_masked on a static class
// does not start the service.
func TestOraclePolicyDoesNotStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := pkitest.Write(t, dir, "policy.yaml", []byte("principals:\n  - id: analyst\n    classes:\n      ssn: [tokenize, detokenize_masked]\n"))
	cfg := config.Defaults()
	cfg.Classes = config.DefaultClasses()
	cfg.PolicyFile = bad
	cfg.Database.URL = pgtest.NewDatabase(t)
	lp, _, err := keys.OpenLocal(t.TempDir() + "/kek.hex")
	require.NoError(t, err)
	_, err = app.Build(t.Context(), cfg, quietLog(), app.WithProvider(lp))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "acknowledge_oracle")
}

// Finding 2: every stream message is authorized with the current policy and counted
// by the rate limiter like a unary call.
func TestStreamMessagesAreAuthorizedAndLimited(t *testing.T) {
	t.Parallel()
	p := startTLSWith(t, securityPolicy, nil)
	ctx := t.Context()
	tok, err := p.r.tokenizer().Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
	require.NoError(t, err)
	msg := &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}}

	// A principal limited to 1 request/s (burst 3) cannot reveal 50 values in a stream.
	stream, err := p.client(t, p.leaf(t, "streamer", "")).DetokenizeStream(ctx)
	require.NoError(t, err)
	revealed := 0
	var streamErr error
	for range 50 {
		if err := stream.Send(msg); err != nil {
			break
		}
		resp, err := stream.Recv()
		if err != nil {
			streamErr = err
			break
		}
		if resp.Results[0].Value == "123-45-6789" {
			revealed++
		}
	}
	assert.LessOrEqual(t, revealed, 3, "the burst, not 50")
	assert.Equal(t, codes.ResourceExhausted, status.Code(streamErr))

	// A principal removed from the policy stops at its next message on an open stream.
	leaver := p.client(t, p.leaf(t, "leaver", ""))
	stream, err = leaver.DetokenizeStream(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(msg))
	first, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, "123-45-6789", first.Results[0].Value)
	without := strings.Replace(securityPolicy, "  - id: leaver\n", "  - id: left-the-hospital\n", 1)
	require.NoError(t, os.WriteFile(p.env.tls.policy, []byte(without), 0o600))
	require.Eventually(t, func() bool {
		_, err := leaver.Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
		return status.Code(err) == codes.PermissionDenied
	}, 20*time.Second, 100*time.Millisecond, "the policy reloads")
	require.NoError(t, stream.Send(msg))
	_, err = stream.Recv()
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "the open stream follows the new policy")

	jsonl := exportJSONL(t, p)
	assert.Contains(t, jsonl, `"caller":"leaver"`)
	assert.Contains(t, jsonl, `"operation":"detokenize_stream","outcome":"PERMISSION_DENIED"`)
}

// Finding 2: limits on streams per principal, an idle-stream timeout, a maximum
// connection age (an open stream ends within it plus the grace), and a rate for
// callers without a policy entry.
func TestStreamAndConnectionBounds(t *testing.T) {
	t.Parallel()
	p := startTLSWith(t, securityPolicy, func(c *config.Config) {
		c.Limits.MaxStreamsPerPrincipal = 4
		c.Limits.StreamIdleTimeout = 300 * time.Millisecond
		c.Limits.UnknownRequestsPerSecond = 2
	})
	ctx := t.Context()
	leaver := p.client(t, p.leaf(t, "leaver", ""))
	// Four streams held open; the fifth is refused.
	var held []tokenizerv1.TokenizerService_TokenizeStreamClient
	var refused error
	for range 5 {
		s, err := leaver.TokenizeStream(ctx)
		require.NoError(t, err)
		held = append(held, s)
	}
	idleErrs := 0
	for _, s := range held {
		_, err := s.Recv()
		switch status.Code(err) {
		case codes.ResourceExhausted:
			refused = err
		case codes.DeadlineExceeded:
			idleErrs++ // closed by the idle timeout: nothing was sent
		}
	}
	require.Error(t, refused, "a fifth concurrent stream is refused")
	assert.Contains(t, status.Convert(refused).Message(), "too many open streams")
	assert.Equal(t, 4, idleErrs, "idle streams are closed by the server")

	// A certificate with no policy entry is limited too (2/s, burst 4).
	stranger := p.client(t, p.leaf(t, "stranger", ""))
	limited := 0
	for range 12 {
		_, err := stranger.Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
		if status.Code(err) == codes.ResourceExhausted {
			limited++
		}
	}
	assert.Positive(t, limited, "unknown callers share a rate")
	assert.Contains(t, metricsText(t, p.r), `tokenizer_rate_limited_total{principal="none"}`)
}

// Finding 2: a connection lives at most max_connection_age (plus the grace for calls
// in flight), so an open stream of a certificate that has since expired or been
// removed from the CA bundle ends within that bound.
func TestMaxConnectionAgeEndsOpenStreams(t *testing.T) {
	t.Parallel()
	p := startTLSWith(t, securityPolicy, func(c *config.Config) {
		c.Limits.MaxConnectionAge = time.Second
		c.RequestTimeout = time.Second // the grace
	})
	stream, err := p.client(t, p.leaf(t, "leaver", "")).TokenizeStream(t.Context())
	require.NoError(t, err)
	require.NoError(t, stream.Send(tokenizeOne("ssn", "123-45-6789")))
	_, err = stream.Recv()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { _, err := stream.Recv(); done <- err }()
	select {
	case err := <-done:
		assert.Error(t, err, "the server closed the aged connection")
	case <-time.After(15 * time.Second):
		t.Fatal("an open stream outlived max_connection_age + grace")
	}
}

// Finding 2: 20,000 idle streams from one certificate do not hold 20,000 streams: the
// server holds at most max_streams_per_principal of them, and the rest are refused
// (and audited) at once, so memory stays bounded.
func TestManyIdleStreamsAreBounded(t *testing.T) {
	t.Parallel()
	const attempts, conns, limit = 20000, 40, 64
	p := startTLSWith(t, securityPolicy, func(c *config.Config) {
		c.Limits.MaxStreamsPerPrincipal = limit
		c.Limits.StreamIdleTimeout = time.Minute
	})
	leaf := p.leaf(t, "leaver", "")
	clients := make([]tokenizerv1.TokenizerServiceClient, conns)
	for i := range clients {
		clients[i] = tokenizerv1.NewTokenizerServiceClient(p.conn(t, leaf))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var refused, open atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 500) // in flight at once (the race detector allows 8,128 goroutines)
	for i := range attempts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := clients[i%conns].TokenizeStream(ctx)
			if err != nil {
				return
			}
			if _, err := s.Recv(); status.Code(err) == codes.ResourceExhausted {
				refused.Add(1)
			} else {
				open.Add(1)
			}
		}()
		if i%2000 == 0 {
			// Throughout: the server holds no more than the limit.
			assert.LessOrEqual(t, streamsOpen(t, p.r), limit)
		}
	}
	// The held streams wait for their idle timeout; everything else is refused.
	require.Eventually(t, func() bool { return refused.Load() >= attempts-limit }, 120*time.Second, 100*time.Millisecond)
	assert.Equal(t, limit, streamsOpen(t, p.r), "exactly the limit is held")
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("20,000 stream attempts: %d refused, %d held (limit %d); heap in use grew %d MiB (client and server)", refused.Load(), limit, limit, grew>>20)
	assert.Less(t, grew, int64(128<<20), "memory stays bounded")
	cancel()
	wg.Wait()
	assert.Equal(t, int64(attempts-limit), refused.Load())
}

// Finding 5: a certificate whose CN is a SPIFFE ID (and has no URI SAN) does not get
// that principal's rights; it gets no identity at all.
func TestCNSpoofingASPIFFEIDIsRefused(t *testing.T) {
	t.Parallel()
	p := startTLSWith(t, securityPolicy, nil)
	spoof := p.client(t, p.leaf(t, "spiffe://hospital.example/ehr", ""))
	_, err := spoof.Tokenize(t.Context(), tokenizeOne("ssn", "123-45-6789"))
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "looks like a URI")
	real := p.client(t, p.leaf(t, "whatever", "spiffe://hospital.example/ehr"))
	_, err = real.Tokenize(t.Context(), tokenizeOne("ssn", "123-45-6789"))
	assert.NoError(t, err, "the same ID as a URI SAN")
	assert.Contains(t, exportJSONL(t, p), `"caller":"unauthenticated"`, "the refusal is audited")
}

// Finding 7: a request none of whose items is permitted is answered per item, as the
// README says: OK with PERMISSION_DENIED on each item (a caller that may not perform
// the operation on any class is refused as a whole).
func TestNoPermittedItemIsDeniedPerItem(t *testing.T) {
	t.Parallel()
	p := startTLSWith(t, securityPolicy, nil)
	mrnOnly := p.client(t, p.leaf(t, "mrn-only", ""))
	resp, err := mrnOnly.Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "123-45-6789"}, {Class: "email", Value: "a@example.org"},
	}})
	require.NoError(t, err)
	for _, r := range resp.Results {
		assert.Equal(t, int32(codes.PermissionDenied), r.Error.GetCode())
		assert.Empty(t, r.Token)
	}
	_, err = mrnOnly.Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "mrn", Token: "MRN-00000000"}}})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "no detokenize grant at all: the whole request")
	// Finding 7: white space is no break-glass justification.
	_, err = p.r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "ETREAT", Justification: " \t\n ",
		Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: "987-65-4321"}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, exportJSONL(t, p), `"reason":"denied by policy: class email: tokenize, class ssn: tokenize"`)
}

// reflectionServices lists the services over gRPC reflection on conn.
func reflectionServices(ctx context.Context, conn *grpc.ClientConn) ([]string, error) {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		// io.EOF: the server ended the stream first; its status comes with Recv.
		_, err = stream.Recv()
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		out = append(out, s.Name)
	}
	return out, nil
}

// Issue 10, finding 7: reflection is off outside development unless configured, and
// when on it answers only clients with a verified certificate.
func TestReflectionIsConfigurableAndAuthenticated(t *testing.T) {
	t.Parallel()
	for _, enabled := range []bool{false, true} {
		t.Run(fmt.Sprintf("reflection=%v", enabled), func(t *testing.T) {
			t.Parallel()
			migrated := newEnv(t)
			serviceLogin(t, migrated, "refl") // migrates: production does not auto-migrate
			p := &pki{ca: pkitest.NewCA(t, "ca"), dir: t.TempDir()}
			srv := p.ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
			ehr := p.ca.Issue(t, pkitest.Options{CN: "ehr", SPIFFE: "spiffe://hospital.example/ehr"})
			p.env = migrated
			p.env.tls = &tlsFiles{
				cert: pkitest.Write(t, p.dir, "s.crt", srv.CertPEM), key: pkitest.Write(t, p.dir, "s.key", srv.KeyPEM),
				ca: pkitest.Write(t, p.dir, "ca.pem", p.ca.PEM), policy: pkitest.Write(t, p.dir, "policy.yaml", []byte(securityPolicy)),
			}
			p.env.mutate = func(c *config.Config) { c.Dev, c.Reflection = false, enabled }
			p.env.client = pkitest.ClientConfig(p.ca, &ehr)
			p.r = p.env.start(t, true)

			_, err := reflectionServices(t.Context(), p.conn(t, nil))
			if !enabled {
				assert.Equal(t, codes.Unimplemented, status.Code(err), "off by default outside development")
				_, err = reflectionServices(t.Context(), p.conn(t, &ehr))
				assert.Equal(t, codes.Unimplemented, status.Code(err))
				return
			}
			assert.Equal(t, codes.Unauthenticated, status.Code(err), "no answer without a client certificate")
			names, err := reflectionServices(t.Context(), p.conn(t, &ehr))
			require.NoError(t, err)
			assert.Contains(t, names, "tokenizer.v1.TokenizerService")
		})
	}
}
