package server_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// labeled reads one labeled series from the admin port (0 when absent).
func (r *running) labeled(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.addrs.Admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return v
}

// TestConcurrentSingleValueRequestsAreCoalesced: many single-value requests at once
// share statements (the metric shows more calls than statements), each still gets its
// own token and value back and its own audit event, and nothing of a value reaches
// the metrics or the logs.
func TestConcurrentSingleValueRequestsAreCoalesced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	const callers = 24
	requests := 0
	var values []string
	calls := `tokenizer_coalesce_calls_per_statement_sum{operation="insert_static"}`
	stmts := `tokenizer_coalesce_calls_per_statement_count{operation="insert_static"}`
	for round := 0; round < 10 && (round == 0 || r.labeled(t, calls) <= r.labeled(t, stmts)); round++ {
		var wg sync.WaitGroup
		for i := range callers {
			v := fmt.Sprintf("123-%02d-%04d", 10+round, 1000+i)
			values = append(values, v)
			requests += 2
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: v}}})
				if !assert.NoError(t, err) || !assert.Nil(t, tok.Results[0].Error) {
					return
				}
				got, _ := revealOne(t, r, "ssn", tok.Results[0].Token)
				assert.Equal(t, v, got, "each request gets its own value back")
			}()
		}
		wg.Wait()
	}
	assert.Greater(t, r.labeled(t, calls), r.labeled(t, stmts), "some statements carried more than one request's call")
	assert.Equal(t, int64(requests), pgtest.Count(t, e.dbURL, `SELECT count(*) FROM audit_events WHERE operation IN ('tokenize', 'detokenize')`),
		"one audit event per request")
	resp, err := http.Get("http://" + r.addrs.Admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, v := range values {
		assert.NotContains(t, string(body), v)
		assert.NotContains(t, e.logs.String(), v)
	}
	assert.True(t, strings.Contains(string(body), "tokenizer_coalesce_items_per_statement_bucket"))
}
