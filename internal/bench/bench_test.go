package bench_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/bench"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/vault"
)

const runFor = 200 * time.Millisecond

// finishThenWait completes n calls at once, then blocks until the run ends and returns
// end(ctx): the error a client sees when the run's deadline cuts a call short.
func finishThenWait(n int64, end func(ctx context.Context) error) bench.Op {
	var calls atomic.Int64
	return func(ctx context.Context, _ int) (int, error) {
		if calls.Add(1) <= n {
			return 1, nil
		}
		<-ctx.Done()
		return 1, end(ctx)
	}
}

func TestRunLoadEndOfRunIsNotAFailure(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		end  func(ctx context.Context) error
	}{
		{"context deadline", func(ctx context.Context) error { return ctx.Err() }},
		{"wrapped context deadline", func(ctx context.Context) error { return errors.Join(errors.New("rpc"), ctx.Err()) }},
		{"gRPC DeadlineExceeded", func(context.Context) error { return status.Error(codes.DeadlineExceeded, "deadline") }},
		{"gRPC Canceled", func(context.Context) error { return status.Error(codes.Canceled, "canceled") }},
		{"any error once the run is over", func(context.Context) error { return errors.New("connection closed") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := bench.RunLoad(context.Background(), "w", 4, 2, runFor, finishThenWait(7, tc.end))
			require.NoError(t, err)
			assert.Equal(t, 7, res.Calls)
			assert.Equal(t, 7, res.Values)
			assert.Equal(t, "w", res.Name)
			assert.Equal(t, 4, res.Batch)
			// The run's clock starts just after its deadline is set, so Elapsed may
			// fall a hair short of the duration.
			assert.InDelta(t, runFor.Seconds(), res.Elapsed.Seconds(), (runFor / 4).Seconds())
		})
	}
}

func TestRunLoadFailures(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	cases := []struct {
		name    string
		op      bench.Op
		wantIs  error
		wantMsg string
	}{
		{"real error names the workload", func(context.Context, int) (int, error) { return 0, boom },
			boom, "tokenize ssn: boom"},
		{"real gRPC error after some calls", func() bench.Op {
			var n atomic.Int64
			return func(context.Context, int) (int, error) {
				if n.Add(1) > 5 {
					return 0, status.Error(codes.Unavailable, "down")
				}
				return 3, nil
			}
		}(), nil, "tokenize ssn: rpc error: code = Unavailable desc = down"},
		{"no call completed", finishThenWait(0, func(ctx context.Context) error { return ctx.Err() }),
			nil, "tokenize ssn: no call completed in 200ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := bench.RunLoad(context.Background(), "tokenize ssn", 10, 3, runFor, tc.op)
			require.Error(t, err)
			assert.Equal(t, tc.wantMsg, err.Error())
			if tc.wantIs != nil {
				assert.ErrorIs(t, err, tc.wantIs)
			}
			assert.Equal(t, bench.Result{}, res)
		})
	}
}

func TestRunLoadCountsAndPercentiles(t *testing.T) {
	t.Parallel()
	const slow, slowest = 2 * time.Millisecond, 20 * time.Millisecond
	// Of every 50 calls: 19 instant, 30 slow, 1 slowest. So the median is a slow call
	// and the 99th percentile the slowest, whatever the machine's load.
	var n atomic.Int64
	var clientsSeen [3]atomic.Bool
	op := func(ctx context.Context, client int) (int, error) {
		clientsSeen[client].Store(true)
		i := n.Add(1) % 50
		switch {
		case i == 0:
			time.Sleep(slowest)
		case i > 19:
			time.Sleep(slow)
		}
		return 5, nil
	}
	res, err := bench.RunLoad(context.Background(), "w", 5, 3, 300*time.Millisecond, op)
	require.NoError(t, err)
	assert.Equal(t, 5*res.Calls, res.Values)
	assert.GreaterOrEqual(t, res.Calls, 50)
	assert.LessOrEqual(t, int64(res.Calls), n.Load())
	assert.GreaterOrEqual(t, res.P50, slow)
	assert.GreaterOrEqual(t, res.P99, slowest)
	assert.LessOrEqual(t, res.P50, res.P99)
	for i := range clientsSeen {
		assert.True(t, clientsSeen[i].Load(), "client %d ran", i)
	}
	assert.InDelta(t, float64(res.Values)/res.Elapsed.Seconds(), res.ValuesPerSec(), 1e-9)
	assert.InDelta(t, float64(res.Calls)/res.Elapsed.Seconds(), res.CallsPerSec(), 1e-9)
}

func TestRunLoadParentCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := bench.RunLoad(ctx, "w", 1, 2, time.Minute, func(context.Context, int) (int, error) { return 1, nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "w: no call completed")
}

// results is one hand-made run at batch 10 with values/s equal to Values (1 s each).
func results(withBaseline bool) []bench.Result {
	mk := func(name string, values int) bench.Result {
		return bench.Result{Name: name, Batch: 10, Calls: values / 10, Values: values, Elapsed: time.Second,
			P50: 1234 * time.Microsecond, P99: 5678 * time.Microsecond}
	}
	rs := []bench.Result{
		mk("tokenize ssn", 2000), mk("tokenize ssn (seen values)", 4000), mk("detokenize ssn", 3000),
		mk("tokenize mrn", 1000), mk("detokenize mrn", 1500),
	}
	if withBaseline {
		rs = append(rs, mk("vault transit encrypt (convergent)", 1000), mk("vault transit decrypt (convergent)", 500))
	}
	return rs
}

func dummyVault(t *testing.T) *vault.Client {
	t.Helper()
	vc, err := vault.New(vault.Config{Address: "http://127.0.0.1:1", Token: "unused"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	return vc
}

func TestRunnerReport(t *testing.T) {
	t.Parallel()
	cfg := bench.Config{Batches: []int{10}, Clients: 4, StaticClass: "ssn", DynamicClass: "mrn"}
	cases := []struct {
		name     string
		vault    bool
		results  []bench.Result
		want     []string
		wantNone []string
	}{
		{"no vault: table only", false, results(false),
			[]string{"workload", "tokenize ssn (seen values)", "detokenize mrn"},
			[]string{"ratios"}},
		{"vault: table and ratios", true, results(true),
			[]string{
				"ratios (values/s, tokenizer ÷ Vault Transit convergent, same batch):",
				"batch 10    tokenize ssn                   ÷ encrypt: 2.00",
				"batch 10    tokenize ssn (seen values)     ÷ encrypt: 4.00",
				"batch 10    detokenize ssn                 ÷ decrypt: 6.00",
				"batch 10    tokenize mrn                   ÷ encrypt: 1.00",
				"batch 10    detokenize mrn                 ÷ decrypt: 3.00",
			}, []string{"mrn (seen values)"}},
		{"vault set but no baseline results: header, no ratios", true, results(false),
			[]string{"ratios"}, []string{"÷ encrypt:", "÷ decrypt:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &bench.Runner{Config: cfg}
			if tc.vault {
				r.Vault = dummyVault(t)
			}
			var buf bytes.Buffer
			r.Report(&buf, tc.results)
			out := buf.String()
			for _, s := range tc.want {
				assert.Contains(t, out, s)
			}
			for _, s := range tc.wantNone {
				assert.NotContains(t, out, s)
			}
			lines := strings.Split(out, "\n")
			require.Greater(t, len(lines), len(tc.results))
			assert.Equal(t, strings.Fields("workload batch clients calls/s values/s p50 p99 p99.9 server CPU s/1k values server RSS MiB"), strings.Fields(lines[0]))
			for i, res := range tc.results {
				fields := strings.Fields(strings.TrimPrefix(lines[i+1], res.Name))
				assert.True(t, strings.HasPrefix(lines[i+1], res.Name+" "), lines[i+1])
				assert.Equal(t, []string{"10", "4", strconv.Itoa(res.Calls), strconv.Itoa(res.Values), "1.23ms", "5.68ms", "0s", "-", "-"}, fields)
			}
		})
	}
}

// fakeService tokenizes by prefixing "t:" and detokenizes by stripping it; it checks
// what the runner sends.
type fakeService struct {
	tokenizerv1.TokenizerServiceClient
	fail      error
	tokenized atomic.Int64
	badValues atomic.Int64
	badDetok  atomic.Int64
}

var ssnShape = regexp.MustCompile(`^\d{3}-\d{2}-\d{4}$`)

func (f *fakeService) Tokenize(_ context.Context, req *tokenizerv1.TokenizeRequest, _ ...grpc.CallOption) (*tokenizerv1.TokenizeResponse, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	resp := &tokenizerv1.TokenizeResponse{}
	for _, it := range req.Items {
		if !ssnShape.MatchString(it.Value) {
			f.badValues.Add(1)
		}
		resp.Results = append(resp.Results, &tokenizerv1.TokenizeResult{Token: "t:" + it.Class + ":" + it.Value})
	}
	f.tokenized.Add(int64(len(req.Items)))
	return resp, nil
}

func (f *fakeService) Detokenize(_ context.Context, req *tokenizerv1.DetokenizeRequest, _ ...grpc.CallOption) (*tokenizerv1.DetokenizeResponse, error) {
	for _, it := range req.Items {
		if req.PurposeOfUse != "HOPERAT" || !strings.HasPrefix(it.Token, "t:"+it.Class+":") {
			f.badDetok.Add(1)
		}
	}
	return &tokenizerv1.DetokenizeResponse{}, nil
}

func TestRunnerRunWithoutBaseline(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		batches   []int
		fail      error
		wantNames []string
		wantErr   string
	}{
		{"one batch", []int{3}, nil, []string{
			"tokenize ssn", "tokenize ssn (seen values)", "detokenize ssn", "tokenize mrn", "detokenize mrn"}, ""},
		{"two batches", []int{1, 4}, nil, []string{
			"tokenize ssn", "tokenize ssn (seen values)", "detokenize ssn", "tokenize mrn", "detokenize mrn",
			"tokenize ssn", "tokenize ssn (seen values)", "detokenize ssn", "tokenize mrn", "detokenize mrn"}, ""},
		{"service failure names the workload", []int{2}, status.Error(codes.PermissionDenied, "no"), nil,
			"tokenize ssn: rpc error: code = PermissionDenied desc = no"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := &fakeService{fail: tc.fail}
			r := &bench.Runner{
				Config:  bench.Config{Batches: tc.batches, Clients: 2, Duration: 30 * time.Millisecond, StaticClass: "ssn", DynamicClass: "mrn"},
				Service: svc,
			}
			res, err := r.Run(context.Background())
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Equal(t, tc.wantErr, err.Error())
				return
			}
			require.NoError(t, err)
			var names []string
			for i, x := range res {
				names = append(names, x.Name)
				assert.Equal(t, tc.batches[i/5], x.Batch, x.Name)
				assert.Equal(t, x.Batch*x.Calls, x.Values, x.Name)
			}
			assert.Equal(t, tc.wantNames, names)
			assert.Zero(t, svc.badValues.Load(), "values are SSN-shaped")
			assert.Zero(t, svc.badDetok.Load(), "detokenize sends pool tokens of its class with purpose HOPERAT")
		})
	}
}

// TestRunLoadServerDeadlineMidRunIsAFailure: the server's own request_timeout answers
// DeadlineExceeded long before the run ends. That is a failure of the service under
// load, not the end of the run; today RunLoad treats it as the end of the run, so the
// client stops silently, the timed-out calls vanish from p99, and the run reports
// success. (Known bug, see the report: endOfRun should accept DeadlineExceeded and
// Canceled only when the run's own context is done or about to be.)
func TestRunLoadServerDeadlineMidRunIsAFailure(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
	}{
		{"server request timeout", status.Error(codes.DeadlineExceeded, "request deadline exceeded")},
		{"server cancelled", status.Error(codes.Canceled, "context canceled")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var n atomic.Int64
			op := func(context.Context, int) (int, error) {
				if n.Add(1) > 3 {
					return 0, tc.err
				}
				return 1, nil
			}
			_, err := bench.RunLoad(context.Background(), "detokenize ssn", 1, 2, 3*time.Second, op)
			require.Error(t, err, "a server-side timeout with the run far from its end must fail the run")
			assert.Contains(t, err.Error(), "detokenize ssn: ")
		})
	}
}

// The PostgreSQL floor inserts rows into a scratch table, reports them as values, and
// drops the table when it ends, also when the run is interrupted mid-floor (the CLI
// cancels on SIGINT/SIGTERM).
func TestFloorDropsItsScratchTable(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	pool, err := bench.OpenFloorDatabase(t.Context(), db, 2)
	require.NoError(t, err)
	defer pool.Close()
	tables := func() int64 {
		return pgtest.Count(t, db, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'tokenizer_bench_floor_%'")
	}
	r := &bench.Runner{
		Config:   bench.Config{Batches: []int{5}, Clients: 2, Duration: 100 * time.Millisecond, StaticClass: "ssn", DynamicClass: "mrn"},
		Service:  &fakeService{},
		Database: pool,
	}
	res, err := r.Run(t.Context())
	require.NoError(t, err)
	floor := res[len(res)-1]
	assert.Equal(t, bench.FloorName, floor.Name)
	assert.Positive(t, floor.Values)
	assert.Zero(t, tables(), "dropped after the run")

	// Interrupted while the floor runs: the table is gone all the same.
	r.Duration = 500 * time.Millisecond
	r.Batches = []int{1}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := r.Run(ctx); done <- err }()
	require.Eventually(t, func() bool { return tables() > 0 }, 20*time.Second, 5*time.Millisecond, "the floor started")
	cancel()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not end when cancelled")
	}
	_ = err // cut short: the CLI reports the interruption (ctx.Err), whatever Run returned
	assert.Zero(t, tables(), "dropped after an interrupted run")
}
