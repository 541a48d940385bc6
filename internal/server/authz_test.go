package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

const testPolicy = `
principals:
  - id: spiffe://hospital.example/ehr
    classes:
      "*": [tokenize, detokenize, delete]
      mrn: [tokenize]
    operations: [audit_export, audit_verify, disclosures]
    purposes: [TREAT, HPAYMT]
    break_glass: true
  - id: analyst
    acknowledge_oracle: true # tests only: tokenize with a masked reveal recovers values
    classes:
      ssn: [tokenize, detokenize_masked]
    purposes: [HOPERAT]
  - id: "spiffe://hospital.example/batch/*"
    classes:
      "*": [tokenize, detokenize]
    purposes: [TREAT]
    rate_limit: {requests_per_second: 1, burst: 3, reveals_per_minute: 3}
  - id: nothing-granted
    purposes: [TREAT]
`

// pki is a test CA with a server certificate, files on disk and a running server.
type pki struct {
	ca, other *pkitest.CA
	dir       string
	env       *env
	r         *running
}

func startTLS(t *testing.T) *pki {
	t.Helper()
	p := &pki{ca: pkitest.NewCA(t, "tokenizer test CA"), other: pkitest.NewCA(t, "someone else's CA"), dir: t.TempDir()}
	srv := p.ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	ehr := p.ca.Issue(t, pkitest.Options{CN: "ehr", SPIFFE: "spiffe://hospital.example/ehr"})
	p.env = newEnv(t)
	p.env.tls = &tlsFiles{
		cert:   pkitest.Write(t, p.dir, "server.crt", srv.CertPEM),
		key:    pkitest.Write(t, p.dir, "server.key", srv.KeyPEM),
		ca:     pkitest.Write(t, p.dir, "clients-ca.pem", p.ca.PEM),
		policy: pkitest.Write(t, p.dir, "policy.yaml", []byte(testPolicy)),
	}
	p.env.client = pkitest.ClientConfig(p.ca, &ehr)
	p.r = p.env.start(t, true)
	return p
}

// client connects as the holder of leaf (nil: no certificate), signed by ca.
func (p *pki) client(t *testing.T, leaf *pkitest.Leaf) tokenizerv1.TokenizerServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(p.r.addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(p.ca, leaf))))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return tokenizerv1.NewTokenizerServiceClient(conn)
}

func (p *pki) rest(t *testing.T, leaf *pkitest.Leaf, path, body string) (int, string, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: pkitest.ClientConfig(p.ca, leaf)}, Timeout: 10 * time.Second}
	resp, err := c.Post("https://"+p.r.addrs.HTTP+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (p *pki) leaf(t *testing.T, cn, spiffe string) *pkitest.Leaf {
	l := p.ca.Issue(t, pkitest.Options{CN: cn, SPIFFE: spiffe})
	return &l
}

func tokenizeOne(class, value string) *tokenizerv1.TokenizeRequest {
	return &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: class, Value: value}}}
}

func TestMTLSAuthentication(t *testing.T) {
	t.Parallel()
	p := startTLS(t)
	ctx := t.Context()

	// No client certificate: the handshake succeeds, the request is UNAUTHENTICATED.
	_, err := p.client(t, nil).Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
	assert.Equal(t, codes.Unauthenticated, status.Code(err), err)
	code, body, err := p.rest(t, nil, "/v1/tokenize", `{"items":[{"class":"ssn","value":"123-45-6789"}]}`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, code, body)

	// A certificate from another CA: refused at the handshake.
	foreign := p.other.Issue(t, pkitest.Options{CN: "ehr", SPIFFE: "spiffe://hospital.example/ehr"})
	_, err = p.client(t, &foreign).Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
	assert.Equal(t, codes.Unavailable, status.Code(err), "handshake failure: %v", err)
	_, _, err = p.rest(t, &foreign, "/v1/tokenize", `{}`)
	assert.Error(t, err, "REST handshake refused")

	// An expired certificate: refused at the handshake.
	expired := p.ca.Issue(t, pkitest.Options{CN: "ehr", SPIFFE: "spiffe://hospital.example/ehr", NotAfter: time.Now().Add(-time.Minute)})
	_, err = p.client(t, &expired).Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
	assert.Equal(t, codes.Unavailable, status.Code(err), "handshake failure: %v", err)

	// A good certificate: the SPIFFE ID is the identity, recorded in the audit log.
	resp, err := p.r.tokenizer().Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
	require.NoError(t, err)
	require.Nil(t, resp.Results[0].Error)
	// The gateway forwards the verified identity, and a client cannot forge it.
	ehr := p.leaf(t, "ehr", "spiffe://hospital.example/ehr")
	code, body, err = p.rest(t, ehr, "/v1/tokenize", `{"items":[{"class":"ssn","value":"123-45-6789"}]}`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code, body)
	req, _ := http.NewRequest(http.MethodPost, "https://"+p.r.addrs.HTTP+"/v1/tokenize", strings.NewReader(`{"items":[{"class":"ssn","value":"123-45-6789"}]}`))
	req.Header.Set("Grpc-Metadata-X-Tokenizer-Client-Identity", "spiffe://hospital.example/ehr")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pkitest.ClientConfig(p.ca, nil)}}
	hr, err := hc.Do(req)
	require.NoError(t, err)
	hr.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, hr.StatusCode, "a forged identity header is ignored")

	jsonl := exportJSONL(t, p)
	assert.Contains(t, jsonl, `"caller":"spiffe://hospital.example/ehr"`)
	assert.Contains(t, jsonl, `"caller":"unauthenticated"`, "refused requests are audited")
	assert.Contains(t, jsonl, `"outcome":"UNAUTHENTICATED"`)
}

func exportJSONL(t *testing.T, p *pki) string {
	t.Helper()
	stream, err := p.r.audit().ExportAudit(t.Context(), &tokenizerv1.ExportAuditRequest{Format: tokenizerv1.ExportFormat_EXPORT_FORMAT_JSONL})
	require.NoError(t, err)
	var b strings.Builder
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		b.Write(chunk.Data)
	}
	return b.String()
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	p := startTLS(t)
	ctx := t.Context()
	ehr := p.r.tokenizer()
	tok, err := ehr.Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "123-45-6789"}, {Class: "mrn", Value: "MRN-12345678"},
	}})
	require.NoError(t, err)
	ssnTok, mrnTok := tok.Results[0].Token, tok.Results[1].Token

	// ehr may detokenize ssn but not mrn: the mrn item alone is denied.
	out, err := ehr.Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{
		{Class: "ssn", Token: ssnTok}, {Class: "mrn", Token: mrnTok},
	}})
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", out.Results[0].Value)
	assert.Equal(t, int32(codes.PermissionDenied), out.Results[1].Error.GetCode())
	assert.Empty(t, out.Results[1].Value)
	ehrLeaf := p.leaf(t, "ehr", "spiffe://hospital.example/ehr")
	code, body, err := p.rest(t, ehrLeaf, "/v1/detokenize", `{"purpose_of_use":"TREAT","items":[{"class":"mrn","token":"`+mrnTok+`"}]}`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"code":7`, "per-item PERMISSION_DENIED over REST")
	assert.NotContains(t, body, "MRN-12345678")

	// A principal without any permission, and one without a policy entry: the request.
	for _, who := range []*pkitest.Leaf{p.leaf(t, "nothing-granted", ""), p.leaf(t, "stranger", "")} {
		_, err = p.client(t, who).Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: ssnTok}}})
		assert.Equal(t, codes.PermissionDenied, status.Code(err))
		_, err = p.client(t, who).Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
		assert.Equal(t, codes.PermissionDenied, status.Code(err))
		code, _, err := p.rest(t, who, "/v1/tokenize", `{"items":[{"class":"ssn","value":"123-45-6789"}]}`)
		require.NoError(t, err)
		assert.Equal(t, http.StatusForbidden, code)
	}

	// Purposes: missing, not granted, break-glass without and with justification.
	_, err = ehr.Detokenize(ctx, &tokenizerv1.DetokenizeRequest{Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: ssnTok}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = ehr.Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "HRESCH", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: ssnTok}}})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = ehr.Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "ETREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: ssnTok}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "break-glass needs a justification")
	bg, err := ehr.Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "ETREAT", Justification: "patient unconscious in ED", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: ssnTok}}})
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", bg.Results[0].Value)
	analyst := p.leaf(t, "analyst", "")
	_, err = p.client(t, analyst).Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "ETREAT", Justification: "curious", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: ssnTok}}})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "no break_glass grant")

	// The masked principal gets the masked value only.
	m, err := p.client(t, analyst).Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "HOPERAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: ssnTok}}})
	require.NoError(t, err)
	assert.Equal(t, "***-**-6789", m.Results[0].Value)
	assert.True(t, m.Results[0].Masked)

	// Request operations: the analyst may not export the audit log.
	conn, err := grpc.NewClient(p.r.addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(p.ca, analyst))))
	require.NoError(t, err)
	defer conn.Close()
	_, err = tokenizerv1.NewAuditServiceClient(conn).VerifyAudit(ctx, &tokenizerv1.VerifyAuditRequest{})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))

	// Denials are audited with their reason; break-glass and masking are flagged.
	jsonl := exportJSONL(t, p)
	assert.Contains(t, jsonl, `"caller":"stranger","classes":["ssn"]`)
	assert.Contains(t, jsonl, `"reason":"caller stranger may not tokenize in any class"`)
	assert.Contains(t, jsonl, `"reason":"caller spiffe://hospital.example/ehr may not invoke purpose of use HRESCH"`)
	assert.Contains(t, jsonl, `"reason":"denied by policy: class mrn: detokenize"`)
	assert.Contains(t, jsonl, `"break_glass":true`)
	assert.Contains(t, jsonl, `"justification":"patient unconscious in ED"`)
	assert.Contains(t, jsonl, `"masked":true`)
	assert.Contains(t, jsonl, `may not break the glass`)
}

func TestRateLimitAndRevealAnomaly(t *testing.T) {
	t.Parallel()
	p := startTLS(t)
	ctx := t.Context()
	tok, err := p.r.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "123-45-6781"}, {Class: "ssn", Value: "123-45-6782"},
		{Class: "ssn", Value: "123-45-6783"}, {Class: "ssn", Value: "123-45-6784"},
	}})
	require.NoError(t, err)
	batch := p.client(t, p.leaf(t, "batch", "spiffe://hospital.example/batch/nightly"))
	req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT"}
	for _, r := range tok.Results {
		req.Items = append(req.Items, &tokenizerv1.DetokenizeItem{Class: "ssn", Token: r.Token})
	}
	// Four reveals in one request: over the threshold of three per minute.
	_, err = batch.Detokenize(ctx, req)
	require.NoError(t, err)
	// The burst is three requests; the fourth within the second is refused.
	var limited error
	for range 4 {
		if _, err := batch.Tokenize(ctx, tokenizeOne("ssn", "123-45-6789")); err != nil {
			limited = err
			break
		}
	}
	require.Error(t, limited)
	st := status.Convert(limited)
	assert.Equal(t, codes.ResourceExhausted, st.Code())
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	require.NotNil(t, retry, "RetryInfo says when to come back")
	assert.Positive(t, retry.RetryDelay.AsDuration())

	jsonl := exportJSONL(t, p)
	assert.Contains(t, jsonl, `"operation":"anomaly"`)
	assert.Contains(t, jsonl, `above the threshold of 3`)
	assert.Contains(t, jsonl, `"outcome":"RESOURCE_EXHAUSTED"`)

	resp, err := http.Get("http://" + p.r.addrs.Admin + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(metrics), `tokenizer_reveal_anomalies_total{principal="spiffe://hospital.example/batch/*"} 1`)
	assert.Contains(t, string(metrics), `tokenizer_rate_limited_total{principal="spiffe://hospital.example/batch/*"}`)
}

func TestPolicyReload(t *testing.T) {
	t.Parallel()
	p := startTLS(t)
	ctx := t.Context()
	tok, err := p.r.tokenizer().Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
	require.NoError(t, err)
	analyst := p.client(t, p.leaf(t, "analyst", ""))
	reveal := func() (*tokenizerv1.DetokenizeResponse, error) {
		return analyst.Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "HOPERAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}})
	}
	out, err := reveal()
	require.NoError(t, err)
	require.True(t, out.Results[0].Masked)

	// Grant the analyst full reveals: the file change takes effect without a restart.
	pkitest.Write(t, p.dir, "policy.yaml", []byte(strings.Replace(testPolicy, "ssn: [tokenize, detokenize_masked]", "ssn: [tokenize, detokenize]", 1)))
	require.Eventually(t, func() bool {
		out, err := reveal()
		return err == nil && out.Results[0].Value == "123-45-6789" && !out.Results[0].Masked
	}, 10*time.Second, 100*time.Millisecond)

	// A broken file keeps the policy in force.
	pkitest.Write(t, p.dir, "policy.yaml", []byte("principals:\n  - id: analyst\n    classes:\n      ssn: [teleport]\n"))
	time.Sleep(2500 * time.Millisecond)
	out, err = reveal()
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", out.Results[0].Value, "the previous policy still applies")
	b, err := os.ReadFile(p.env.tls.policy)
	require.NoError(t, err)
	require.Contains(t, string(b), "teleport")
	assert.Contains(t, p.env.logs.String(), "policy reload failed")
}

func TestCertificateRotation(t *testing.T) {
	t.Parallel()
	p := startTLS(t)
	serverSerial := func(cfg *tls.Config) string {
		conn, err := tls.Dial("tcp", p.r.addrs.GRPC, cfg)
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	ehr := p.leaf(t, "ehr", "spiffe://hospital.example/ehr")
	cfg := pkitest.ClientConfig(p.ca, ehr)
	cfg.NextProtos = []string{"h2"}
	before := serverSerial(cfg)

	// A new server certificate on disk is served to new connections.
	next := p.ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	pkitest.Write(t, p.dir, "server.key", next.KeyPEM)
	pkitest.Write(t, p.dir, "server.crt", next.CertPEM)
	require.Eventually(t, func() bool { return serverSerial(cfg) == next.Serial.String() }, 10*time.Second, 100*time.Millisecond)
	assert.NotEqual(t, before, next.Serial.String())

	// A client CA added to the bundle is trusted without a restart.
	newCA := pkitest.NewCA(t, "new client CA")
	leaf := newCA.Issue(t, pkitest.Options{CN: "ehr", SPIFFE: "spiffe://hospital.example/ehr"})
	client := func() error {
		conn, err := grpc.NewClient(p.r.addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(p.ca, &leaf))))
		require.NoError(t, err)
		defer conn.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err = tokenizerv1.NewTokenizerServiceClient(conn).Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
		return err
	}
	require.Error(t, client())
	pkitest.Write(t, p.dir, "clients-ca.pem", append(append([]byte{}, p.ca.PEM...), newCA.PEM...))
	require.Eventually(t, func() bool { return client() == nil }, 10*time.Second, 100*time.Millisecond)
}
