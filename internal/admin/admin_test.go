package admin_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/admin"
)

func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	b, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return rec.Code, string(b)
}

func TestHandlerHealthAndReadiness(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		path       string
		reason     string
		wantStatus int
		wantBody   string
	}{
		{"healthz is up whatever readiness says", "/healthz", "database down", http.StatusOK, "ok\n"},
		{"readyz not ready names the reason", "/readyz", "PostgreSQL does not answer", http.StatusServiceUnavailable, "not ready: PostgreSQL does not answer\n"},
		{"readyz another reason", "/readyz", "schema is at version 3, want 4", http.StatusServiceUnavailable, "not ready: schema is at version 3, want 4\n"},
		{"readyz ready", "/readyz", "", http.StatusOK, "ready\n"},
		{"unknown path", "/nothing", "", http.StatusNotFound, "404 page not found\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var called bool
			h := admin.Handler(admin.NewMetrics(), func(ctx context.Context) string {
				called = true
				require.NotNil(t, ctx)
				return tc.reason
			})
			code, body := get(t, h, http.MethodGet, tc.path)
			assert.Equal(t, tc.wantStatus, code)
			assert.Equal(t, tc.wantBody, body)
			assert.Equal(t, tc.path == "/readyz", called, "notReady is consulted by /readyz only")
		})
	}
}

func TestHandlerRefusesOtherMethods(t *testing.T) {
	t.Parallel()
	h := admin.Handler(admin.NewMetrics(), func(context.Context) string { return "" })
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			t.Run(method+" "+path, func(t *testing.T) {
				t.Parallel()
				code, _ := get(t, h, method, path)
				assert.Equal(t, http.StatusMethodNotAllowed, code)
			})
		}
	}
	t.Run("HEAD is allowed with GET", func(t *testing.T) {
		t.Parallel()
		code, _ := get(t, h, http.MethodHead, "/healthz")
		assert.Equal(t, http.StatusOK, code)
	})
}

func TestMetricsExposed(t *testing.T) {
	t.Parallel()
	m := admin.NewMetrics()
	m.Requests.WithLabelValues("/tokenizer.v1.TokenizerService/Tokenize", "OK").Inc()
	m.Duration.WithLabelValues("/tokenizer.v1.TokenizerService/Tokenize").Observe(0.002)
	m.Items.WithLabelValues("tokenize", "ssn", "OK").Add(3)
	m.Panics.Inc()
	m.Ready.Set(1)
	m.AuditFailures.Inc()
	m.PolicyReloads.WithLabelValues("ok").Inc()
	m.BreakGlass.Inc()
	m.Anomalies.WithLabelValues("billing").Inc()
	m.RateLimited.WithLabelValues("billing").Inc()
	h := admin.Handler(m, func(context.Context) string { return "" })
	code, body := get(t, h, http.MethodGet, "/metrics")
	require.Equal(t, http.StatusOK, code)

	cases := []struct{ name, line string }{
		{"requests", `tokenizer_grpc_requests_total{code="OK",method="/tokenizer.v1.TokenizerService/Tokenize"} 1`},
		{"duration", `tokenizer_grpc_request_duration_seconds_count{method="/tokenizer.v1.TokenizerService/Tokenize"} 1`},
		{"items", `tokenizer_items_total{class="ssn",operation="tokenize",outcome="OK"} 3`},
		{"panics", `tokenizer_panics_total 1`},
		{"ready", `tokenizer_ready 1`},
		{"audit failures", `tokenizer_audit_append_failures_total 1`},
		{"policy reloads", `tokenizer_policy_reloads_total{result="ok"} 1`},
		{"break glass", `tokenizer_break_glass_reveals_total 1`},
		{"anomalies", `tokenizer_reveal_anomalies_total{principal="billing"} 1`},
		{"rate limited", `tokenizer_rate_limited_total{principal="billing"} 1`},
		{"go collector", `go_goroutines `},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Contains(t, body, tc.line)
		})
	}
}

// TestMetricsLabelsBounded checks every tokenizer_* family's label names against the
// bounded set the package documents: no label may carry a value, token or free text.
func TestMetricsLabelsBounded(t *testing.T) {
	t.Parallel()
	m := admin.NewMetrics()
	m.Requests.WithLabelValues("m", "OK").Inc()
	m.Duration.WithLabelValues("m").Observe(1)
	m.Items.WithLabelValues("tokenize", "ssn", "OK").Inc()
	m.PolicyReloads.WithLabelValues("ok").Inc()
	m.Anomalies.WithLabelValues("p").Inc()
	m.RateLimited.WithLabelValues("p").Inc()
	allowed := map[string]bool{"method": true, "code": true, "operation": true, "class": true,
		"outcome": true, "result": true, "principal": true, "le": true}
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	seen := 0
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "tokenizer_") {
			continue
		}
		seen++
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				assert.True(t, allowed[l.GetName()], "%s has unbounded label %q", f.GetName(), l.GetName())
			}
		}
	}
	assert.Equal(t, 14, seen, "tokenizer_* families")
}

func TestHandlerPprofOnlyWhenAsked(t *testing.T) {
	// Not parallel: WithPprof sets the process's block and mutex profile rates.
	ready := func(context.Context) string { return "" }
	code, _ := get(t, admin.Handler(admin.NewMetrics(), ready), http.MethodGet, "/debug/pprof/")
	assert.Equal(t, http.StatusNotFound, code, "the profiler is off unless asked for")

	h := admin.Handler(admin.NewMetrics(), ready, admin.WithPprof())
	code, body := get(t, h, http.MethodGet, "/debug/pprof/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "block")
	code, _ = get(t, h, http.MethodGet, "/debug/pprof/block?debug=1")
	assert.Equal(t, http.StatusOK, code)
}
