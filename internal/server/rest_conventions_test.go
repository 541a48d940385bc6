package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

// do sends one REST request and returns the response and its body.
func do(t *testing.T, r *running, method, path string, body io.Reader, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+r.addrs.HTTP+path, body)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(raw)
}

// events decodes the audit log.
func events(t *testing.T, dbURL string) []audit.Decoded {
	t.Helper()
	var out []audit.Decoded
	for _, row := range readChain(t, dbURL) {
		d, err := audit.Decode(row.Body)
		require.NoError(t, err)
		out = append(out, d)
	}
	return out
}

// TestRESTConventions: a body over the limit is 413 (declared or not), a method the
// route does not serve is 405 with Allow, an unknown field is named (a value never
// is), and each of these, which never reach gRPC, leaves an audit event shaped like
// the others, with the request id the client sent.
func TestRESTConventions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mutate = func(c *config.Config) { c.Limits.MaxMessageBytes = 2048 }
	r := e.start(t, true)
	secret := "321-54-9876"
	big := `{"items":[{"class":"ssn","value":"` + secret + `","reference":"` + strings.Repeat("x", 3000) + `"}]}`

	type want struct {
		status  int
		code    float64
		message string
		op      string
		outcome string
	}
	tests := []struct {
		name, method, path string
		body               func() io.Reader
		want               want
		allow              string
	}{
		{"oversize, declared", "POST", "/v1/tokenize", func() io.Reader { return strings.NewReader(big) },
			want{413, 3, "request body exceeds the limit of 2048 bytes", "tokenize", "INVALID_ARGUMENT"}, ""},
		{"oversize, chunked", "POST", "/v1/detokenize", func() io.Reader { return io.MultiReader(strings.NewReader(big)) },
			want{413, 3, "request body exceeds the limit of 2048 bytes", "detokenize", "INVALID_ARGUMENT"}, ""},
		{"GET on a POST route", "GET", "/v1/tokenize", func() io.Reader { return nil },
			want{405, 12, "method GET is not allowed on /v1/tokenize; use POST", "tokenize", "UNIMPLEMENTED"}, "POST"},
		{"POST on a GET route", "POST", "/v1/classes", func() io.Reader { return strings.NewReader("{}") },
			want{405, 12, "method POST is not allowed on /v1/classes; use GET", "list_classes", "UNIMPLEMENTED"}, "GET"},
		{"unknown field", "POST", "/v1/tokens:delete", func() io.Reader {
			return strings.NewReader(`{"items":[{"class":"ssn","token":"` + secret + `","colour":"` + secret + `"}]}`)
		}, want{400, 3, `request body: unknown field "colour" for this method`, "delete_tokens", "INVALID_ARGUMENT"}, ""},
		{"unknown field that is not a name", "POST", "/v1/tokenize", func() io.Reader { return strings.NewReader(`{"` + secret + `":1}`) },
			want{400, 3, "not valid JSON", "tokenize", "INVALID_ARGUMENT"}, ""},
		{"bad JSON", "POST", "/v1/tokenize", func() io.Reader { return strings.NewReader(`{"items":[{"value":"` + secret) },
			want{400, 3, "not valid JSON", "tokenize", "INVALID_ARGUMENT"}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("conv-%d", i)
			resp, raw := do(t, r, tt.method, tt.path, tt.body(), map[string]string{"Content-Type": "application/json", "X-Request-Id": id})
			assert.Equal(t, tt.want.status, resp.StatusCode, raw)
			assert.Equal(t, tt.allow, resp.Header.Get("Allow"))
			assert.Equal(t, id, resp.Header.Get("X-Request-Id"))
			var body map[string]any
			require.NoError(t, json.Unmarshal([]byte(raw), &body), raw)
			assert.Equal(t, tt.want.code, body["code"])
			assert.Contains(t, body["message"], tt.want.message)
			assert.NotContains(t, raw, secret)

			var ev *audit.Decoded
			for _, d := range events(t, e.dbURL) {
				if d.RequestID == id {
					ev = &d
				}
			}
			require.NotNil(t, ev, "an audit event for request %s", id)
			assert.Equal(t, tt.want.op, ev.Operation)
			assert.Equal(t, tt.want.outcome, ev.Outcome)
			assert.Contains(t, ev.Reason, tt.want.message)
			assert.Equal(t, "dev", ev.Caller)
			assert.Equal(t, "127.0.0.1", ev.ClientAddress)
			assert.NotContains(t, ev.Reason, secret)
		})
	}

	resp, _ := do(t, r, "GET", "/v1/nothing", nil, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "an unknown path is not a method problem")
}

// TestRESTStreamBadLineIsAudited: a stream line that does not decode ends the stream:
// the lines before it are answered, the last line is the error naming the field, and
// the rejected line leaves an audit event.
func TestRESTStreamBadLineIsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	body := `{"items":[{"class":"ssn","value":"123-45-6789","reference":"a"}]}` + "\n" + `{"itemz":[]}` + "\n"
	resp, raw := do(t, r, "POST", "/v1/tokenize:stream", strings.NewReader(body), map[string]string{"X-Request-Id": "stream-bad-line"})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, raw, `"reference":"a"`)
	lines := strings.Split(strings.TrimSpace(raw), "\n")
	require.Len(t, lines, 2, raw)
	assert.JSONEq(t, `{"error":{"code":3,"message":"request body: unknown field \"itemz\" for this method (field names are the proto names, e.g. purpose_of_use, or their lowerCamel JSON names)"}}`, lines[1])
	require.Eventually(t, func() bool {
		for _, d := range events(t, e.dbURL) {
			if d.RequestID == "stream-bad-line" && d.Operation == "tokenize_stream" && d.Outcome == "INVALID_ARGUMENT" {
				return strings.Contains(d.Reason, `unknown field "itemz"`)
			}
		}
		return false
	}, 5e9, 5e7)
}

// TestRESTExportContentType: the REST export is served with its format's media type,
// byte for byte (no separator at chunk boundaries, even past the 64 KiB chunk size).
func TestRESTExportContentType(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	traffic(t, r, 150) // 300 events: well over one 64 KiB chunk of JSON Lines
	for _, tt := range []struct{ format, contentType string }{
		{"EXPORT_FORMAT_JSONL", "application/jsonl"},
		{"EXPORT_FORMAT_CSV", "text/csv; charset=utf-8"},
		{"EXPORT_FORMAT_FHIR", "application/fhir+json"},
	} {
		resp, raw := do(t, r, "GET", "/v1/audit/export?format="+tt.format+"&to_seq=300", nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, raw)
		assert.Equal(t, tt.contentType, resp.Header.Get("Content-Type"), tt.format)
		switch tt.format {
		case "EXPORT_FORMAT_JSONL":
			require.Greater(t, len(raw), 64<<10)
			sc := bufio.NewScanner(strings.NewReader(raw))
			sc.Buffer(nil, 1<<20)
			n := 0
			for sc.Scan() {
				var m map[string]any
				require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "line %d is one whole event", n+1)
				n++
			}
			assert.Equal(t, 300, n)
		case "EXPORT_FORMAT_CSV":
			assert.Equal(t, 301, strings.Count(raw, "\n"), "a header and 300 rows")
		case "EXPORT_FORMAT_FHIR":
			var bundle map[string]any
			require.NoError(t, json.Unmarshal([]byte(raw), &bundle))
			assert.Equal(t, "Bundle", bundle["resourceType"])
		}
	}
}

// TestRESTRejectionCallerIsTheCertificate: over mTLS, a request the gateway refuses is
// audited with the identity of the verified client certificate (SPIFFE ID, else CN),
// and without a certificate as unauthenticated.
func TestRESTRejectionCallerIsTheCertificate(t *testing.T) {
	t.Parallel()
	p := startTLS(t)
	for _, tt := range []struct {
		leaf   *pkitest.Leaf
		caller string
	}{
		{p.leaf(t, "ehr", "spiffe://hospital.example/ehr"), "spiffe://hospital.example/ehr"},
		{p.leaf(t, "analyst", ""), "analyst"},
		{nil, "unauthenticated"},
	} {
		code, raw, err := p.rest(t, tt.leaf, "/v1/tokenize", `{"itemz":[]}`)
		require.NoError(t, err)
		assert.Equal(t, http.StatusBadRequest, code, raw)
		assert.Contains(t, raw, `unknown field \"itemz\"`)
		found := false
		for _, d := range events(t, p.env.dbURL) {
			if d.Operation == "tokenize" && d.Outcome == "INVALID_ARGUMENT" && d.Caller == tt.caller {
				found = true
				assert.Contains(t, d.Reason, "itemz")
			}
		}
		assert.True(t, found, "an audit event with caller %s", tt.caller)
	}
}

// TestRESTRejectionFailsClosedWithoutAudit: when a rejection's audit event cannot be
// written, the answer is 503, as for any request whose event cannot be written.
func TestRESTRejectionFailsClosedWithoutAudit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	pgtest.Exec(t, e.dbURL, `ALTER TABLE audit_events ADD CONSTRAINT refuse_all CHECK (seq < 0) NOT VALID`)
	code, _, raw := r.rest(t, "/v1/tokenize", `{"itemz":[]}`)
	assert.Equal(t, http.StatusServiceUnavailable, code, raw)
	assert.Contains(t, raw, "audit log unavailable")
	resp, raw := do(t, r, "GET", "/v1/tokenize", nil, nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, raw)

	pgtest.Exec(t, e.dbURL, `ALTER TABLE audit_events DROP CONSTRAINT refuse_all`)
	code, _, raw = r.rest(t, "/v1/tokenize", `{"itemz":[]}`)
	assert.Equal(t, http.StatusBadRequest, code, raw)
}
