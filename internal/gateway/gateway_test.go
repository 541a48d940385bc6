package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/authn"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

// planted is a distinctive value that must never appear in an error.
const planted = "987-65-4329"

func testCodec(maxBytes int64) *safeJSON {
	return &safeJSON{
		JSONPb: &runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{UseProtoNames: true},
		},
		maxBytes: maxBytes,
	}
}

func TestSafeJSONDecodeErrorsNeverEchoInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
	}{
		{"malformed JSON", `{"items":[{"class":"ssn","value":"` + planted + `"}`},
		{"unquoted value", `{"items":[{"class":"ssn","value":` + planted + `}]}`},
		{"wrong type", `{"items":[{"class":"ssn","value":{"x":"` + planted + `"}}]}`},
		{"unknown field named by the value", `{"items":[{"class":"ssn","` + planted + `":"x"}]}`},
		{"unknown field carrying the value", `{"items":[{"class":"ssn","nickname":"` + planted + `"}]}`},
		{"trailing garbage", `{"items":[]}` + planted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := testCodec(1 << 20)
			for _, decode := range map[string]func() error{
				"Unmarshal":  func() error { return c.Unmarshal([]byte(tc.body), &tokenizerv1.TokenizeRequest{}) },
				"NewDecoder": func() error { return c.NewDecoder(strings.NewReader(tc.body)).Decode(&tokenizerv1.TokenizeRequest{}) },
			} {
				err := decode()
				if tc.name == "trailing garbage" && err == nil {
					continue // a streaming decoder stops after the first value
				}
				require.Error(t, err)
				assert.NotContains(t, err.Error(), planted)
				assert.NotContains(t, err.Error(), "987")
				if tc.name == "unknown field carrying the value" {
					// The field is named (issue 11), its value never.
					assert.Contains(t, err.Error(), `unknown field "nickname"`)
					return
				}
				assert.ErrorIs(t, err, errBadJSON)
			}
		})
	}
}

func TestSafeJSONSanitize(t *testing.T) {
	t.Parallel()
	c := testCodec(4096)
	cases := []struct {
		name string
		in   error
		want string // "" means the error passes through unchanged
	}{
		{"nil", nil, ""},
		{"EOF passes through", io.EOF, ""},
		{"too big names the limit", &http.MaxBytesError{Limit: 4096}, "request body exceeds the limit of 4096 bytes"},
		{"anything else is the fixed message", assert.AnError, errBadJSON.Error()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := c.sanitize(tc.in)
			if tc.want == "" {
				assert.Equal(t, tc.in, got)
				return
			}
			require.Error(t, got)
			assert.Equal(t, tc.want, got.Error())
		})
	}
}

func TestSafeJSONDecodeValid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
	}{
		{"proto names", `{"items":[{"class":"ssn","value":"v"}],"ttl":"60s"}`},
		{"reordered fields", `{"ttl":"60s","items":[{"value":"v","class":"ssn"}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var req tokenizerv1.TokenizeRequest
			require.NoError(t, testCodec(1<<20).Unmarshal([]byte(tc.body), &req))
			require.Len(t, req.Items, 1)
			assert.Equal(t, "ssn", req.Items[0].Class)
			assert.Equal(t, int64(60), req.Ttl.Seconds)
		})
	}
	t.Run("camelCase input", func(t *testing.T) {
		t.Parallel()
		var req tokenizerv1.DetokenizeRequest
		require.NoError(t, testCodec(1<<20).Unmarshal([]byte(`{"purposeOfUse":"TREAT"}`), &req))
		assert.Equal(t, "TREAT", req.PurposeOfUse)
	})
}

func TestSafeJSONMarshalIsCompact(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		msg  any
		want string
	}{
		{"response with proto names", &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: "t1"}}},
			`{"items":[{"class":"ssn","token":"t1"}],"purpose_of_use":"TREAT"}`},
		{"empty message", &tokenizerv1.TokenizeResponse{}, `{}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := testCodec(1 << 20).Marshal(tc.msg)
			require.NoError(t, err)
			assert.NotContains(t, string(out), " ")
			assert.NotContains(t, string(out), "\n")
			assert.JSONEq(t, tc.want, string(out))
			var sb strings.Builder
			require.NoError(t, testCodec(1<<20).NewEncoder(&sb).Encode(tc.msg))
			assert.Equal(t, string(out)+"\n", sb.String())
		})
	}
}

func TestHeaderIn(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		key    string
		want   string
		wantOK bool
	}{
		{"request id", "X-Request-Id", "x-request-id", true},
		{"request id lower case", "x-request-id", "x-request-id", true},
		{"identity", authn.IdentityHeader, "", false},
		{"identity upper case", strings.ToUpper(authn.IdentityHeader), "", false},
		{"identity canonical", "X-Tokenizer-Client-Identity", "", false},
		{"identity mixed case", "x-TOKENIZER-client-IDENTITY", "", false},
		{"identity with metadata prefix", "Grpc-Metadata-X-Tokenizer-Client-Identity", "", false},
		{"identity with metadata prefix lower", "grpc-metadata-" + authn.IdentityHeader, "", false},
		{"identity with gateway prefix", "Grpcgateway-" + authn.IdentityHeader, "", false},
		{"metadata prefix passes", "Grpc-Metadata-Foo", "Foo", true},
		{"permanent header is prefixed", "Authorization", runtime.MetadataPrefix + "Authorization", true},
		{"unknown header dropped", "X-Custom", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := headerIn(tc.key)
			assert.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.want, got)
			if tc.wantOK && tc.want != "x-request-id" {
				dg, dok := runtime.DefaultHeaderMatcher(tc.key)
				assert.Equal(t, dok, ok)
				assert.Equal(t, dg, got)
			}
		})
	}
}

func TestHeaderOut(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, key, want string }{
		{"request id", "x-request-id", "X-Request-Id"},
		{"other metadata is prefixed", "x-foo", runtime.MetadataHeaderPrefix + "x-foo"},
		{"content type is prefixed", "content-type", runtime.MetadataHeaderPrefix + "content-type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := headerOut(tc.key)
			assert.True(t, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

// verifiedState is the TLS state of a connection whose client presented leaf, verified
// against ca.
func verifiedState(t *testing.T, ca *pkitest.CA, leaf pkitest.Leaf) *tls.ConnectionState {
	t.Helper()
	cert, err := x509.ParseCertificate(leaf.TLS.Certificate[0])
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	chains, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: chains}
}

func TestForwardIdentity(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, "gateway test CA")
	spiffe := "spiffe://example.org/billing"
	cases := []struct {
		name  string
		state func(t *testing.T) *tls.ConnectionState
		want  metadata.MD
	}{
		{"no TLS", func(*testing.T) *tls.ConnectionState { return nil }, nil},
		{"TLS without a client certificate", func(*testing.T) *tls.ConnectionState { return &tls.ConnectionState{} }, nil},
		{"verified CN", func(t *testing.T) *tls.ConnectionState {
			return verifiedState(t, ca, ca.Issue(t, pkitest.Options{CN: "billing-svc"}))
		}, metadata.Pairs(authn.IdentityHeader, "billing-svc")},
		{"verified SPIFFE wins over CN", func(t *testing.T) *tls.ConnectionState {
			return verifiedState(t, ca, ca.Issue(t, pkitest.Options{CN: "billing-svc", SPIFFE: spiffe}))
		}, metadata.Pairs(authn.IdentityHeader, spiffe)},
		{"presented but unverified", func(t *testing.T) *tls.ConnectionState {
			leaf := ca.Issue(t, pkitest.Options{CN: "billing-svc"})
			cert, err := x509.ParseCertificate(leaf.TLS.Certificate[0])
			require.NoError(t, err)
			return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/v1/tokenize", nil)
			r.TLS = tc.state(t)
			assert.Equal(t, tc.want, forwardIdentity(context.Background(), r))
		})
	}
}

// fakeService records what reached it and answers tokenize with one token per item.
type fakeService struct {
	tokenizerv1.UnimplementedTokenizerServiceServer
	mu   sync.Mutex
	md   metadata.MD
	last *tokenizerv1.TokenizeRequest
}

func (f *fakeService) Tokenize(ctx context.Context, req *tokenizerv1.TokenizeRequest) (*tokenizerv1.TokenizeResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.md, f.last = md, req
	f.mu.Unlock()
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", "rid-from-server"))
	resp := &tokenizerv1.TokenizeResponse{}
	for _, it := range req.Items {
		resp.Results = append(resp.Results, &tokenizerv1.TokenizeResult{Reference: it.Reference, Token: "tok-" + it.Class})
	}
	return resp, nil
}

func (f *fakeService) ListClasses(context.Context, *tokenizerv1.ListClassesRequest) (*tokenizerv1.ListClassesResponse, error) {
	return &tokenizerv1.ListClassesResponse{}, nil
}

func (f *fakeService) seen() (metadata.MD, *tokenizerv1.TokenizeRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.md, f.last
}

const testMaxBytes = 2048

// startGateway serves New over a bufconn gRPC server running svc.
func startGateway(t *testing.T, svc *fakeService) *httptest.Server {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	tokenizerv1.RegisterTokenizerServiceServer(gs, svc)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h, err := New(context.Background(), conn, testMaxBytes, WithMaxItems(1000))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, srv *httptest.Server, method, path, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestNewEndToEnd(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		method     string
		path       string
		body       string
		hdr        map[string]string
		wantStatus int
		check      func(t *testing.T, resp *http.Response, body string, svc *fakeService)
	}{
		{"tokenize maps to the RPC", http.MethodPost, "/v1/tokenize",
			`{"items":[{"class":"ssn","value":"` + planted + `","reference":"r1"}]}`,
			map[string]string{"X-Request-Id": "rid-1", "Content-Type": "application/json"}, http.StatusOK,
			func(t *testing.T, resp *http.Response, body string, svc *fakeService) {
				assert.Equal(t, `{"results":[{"reference":"r1","token":"tok-ssn"}]}`, strings.TrimSpace(body))
				md, last := svc.seen()
				require.NotNil(t, last)
				assert.Equal(t, planted, last.Items[0].Value)
				assert.Equal(t, []string{"rid-1"}, md.Get("x-request-id"))
				assert.Equal(t, "rid-from-server", resp.Header.Get("X-Request-Id"))
			}},
		{"client cannot set the identity", http.MethodPost, "/v1/tokenize", `{"items":[]}`,
			map[string]string{"X-Tokenizer-Client-Identity": "admin", "Grpc-Metadata-X-Tokenizer-Client-Identity": "admin"}, http.StatusOK,
			func(t *testing.T, _ *http.Response, _ string, svc *fakeService) {
				md, _ := svc.seen()
				assert.Empty(t, md.Get(authn.IdentityHeader))
			}},
		{"list classes is a GET", http.MethodGet, "/v1/classes", "", nil, http.StatusOK,
			func(t *testing.T, _ *http.Response, body string, _ *fakeService) {
				assert.Equal(t, `{}`, strings.TrimSpace(body))
			}},
		{"unimplemented RPC maps to 501", http.MethodPost, "/v1/tokens:delete", `{}`, nil, http.StatusNotImplemented, nil},
		{"unknown path is 404", http.MethodGet, "/v1/nothing", "", nil, http.StatusNotFound, nil},
		{"openapi document", http.MethodGet, "/openapi.json", "", nil, http.StatusOK,
			func(t *testing.T, resp *http.Response, body string, _ *fakeService) {
				assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
				var doc map[string]any
				require.NoError(t, json.Unmarshal([]byte(body), &doc))
				assert.Contains(t, body, "/v1/tokenize")
				assert.Equal(t, string(tokenizerv1.OpenAPI), body)
			}},
		{"bad JSON is 400 without the value", http.MethodPost, "/v1/tokenize",
			`{"items":[{"class":"ssn","value":` + planted + `}]}`, nil, http.StatusBadRequest,
			func(t *testing.T, _ *http.Response, body string, svc *fakeService) {
				assert.NotContains(t, body, planted)
				assert.Contains(t, body, "not valid JSON")
			}},
		{"unknown field is 400 without its name", http.MethodPost, "/v1/tokenize",
			`{"items":[],"` + planted + `":1}`, nil, http.StatusBadRequest,
			func(t *testing.T, _ *http.Response, body string, _ *fakeService) {
				assert.NotContains(t, body, planted)
			}},
		{"oversize body names the limit", http.MethodPost, "/v1/tokenize",
			`{"items":[{"class":"ssn","value":"` + planted + strings.Repeat("x", testMaxBytes) + `"}]}`, nil, http.StatusRequestEntityTooLarge,
			func(t *testing.T, _ *http.Response, body string, _ *fakeService) {
				assert.Contains(t, body, "request body exceeds the limit of 2048 bytes")
				assert.NotContains(t, body, planted)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := &fakeService{}
			srv := startGateway(t, svc)
			resp, body := do(t, srv, tc.method, tc.path, tc.body, tc.hdr)
			assert.Equal(t, tc.wantStatus, resp.StatusCode, body)
			if tc.check != nil {
				tc.check(t, resp, body, svc)
			}
		})
	}
}
