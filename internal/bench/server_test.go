package bench_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/bench"
)

// fakeAdmin serves process metrics whose CPU counter grows by step per scrape.
func fakeAdmin(t *testing.T, step float64, rss string) string {
	t.Helper()
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := scrapes.Add(1)
		fmt.Fprintf(w, "# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total %g\nprocess_resident_memory_bytes %s\ngo_goroutines 7\n", float64(n)*step, rss)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestSampleServer(t *testing.T) {
	t.Parallel()
	s, err := bench.SampleServer(t.Context(), fakeAdmin(t, 1.5, "1.048576e+08"))
	require.NoError(t, err)
	assert.InDelta(t, 1.5, s.CPUSeconds, 1e-9)
	assert.InDelta(t, 104857600, s.RSSBytes, 1e-3)

	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "go_goroutines 1") }))
	t.Cleanup(empty.Close)
	_, err = bench.SampleServer(t.Context(), strings.TrimPrefix(empty.URL, "http://"))
	assert.ErrorContains(t, err, "process_cpu_seconds_total")
	_, err = bench.SampleServer(t.Context(), "127.0.0.1:1")
	assert.Error(t, err)
}

func TestRunnerReportsServerCost(t *testing.T) {
	t.Parallel()
	svc := &fakeService{}
	r := &bench.Runner{
		Config:  bench.Config{Batches: []int{10}, Clients: 2, Duration: 100 * time.Millisecond, StaticClass: "ssn", DynamicClass: "mrn"},
		Service: svc, Admin: fakeAdmin(t, 2, "5e+07"),
	}
	results, err := r.Run(context.Background())
	require.NoError(t, err)
	require.NotEmpty(t, results)
	for _, res := range results {
		require.NotNil(t, res.Server, res.Name)
		// Each workload spans two scrapes 2 CPU seconds apart.
		assert.InDelta(t, 2.0/float64(res.Values)*1000, res.Server.CPUSecondsPer1000, 1e-9, res.Name)
		assert.InDelta(t, 5e7, res.Server.RSSBytes, 1, res.Name)
		assert.GreaterOrEqual(t, res.P999, res.P99, res.Name)
	}
}
