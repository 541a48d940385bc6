// Package bench is the load generator behind `tokenizer bench`: workloads against a
// running service over gRPC, and the same work against HashiCorp Vault Transit
// (convergent encryption, which stores nothing) as the baseline, in one run.
package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Result is one measured workload.
type Result struct {
	Name    string        `json:"name"`
	Batch   int           `json:"batch"`
	Clients int           `json:"clients"`
	Calls   int           `json:"calls"`
	Values  int           `json:"values"`
	Elapsed time.Duration `json:"elapsed_ns"`
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
	P999    time.Duration `json:"p999_ns"`
	// Server is what the service's process used during the workload, when its admin
	// address is known (nil for the baseline).
	Server *ServerUse `json:"server,omitempty"`
}

// ServerUse is the service process's cost of one workload.
type ServerUse struct {
	CPUSecondsPer1000 float64 `json:"cpu_seconds_per_1000_values"`
	RSSBytes          float64 `json:"rss_bytes"`
}

// ValuesPerSec is the workload's throughput in values.
func (r Result) ValuesPerSec() float64 { return float64(r.Values) / r.Elapsed.Seconds() }

// CallsPerSec is the workload's throughput in calls.
func (r Result) CallsPerSec() float64 { return float64(r.Calls) / r.Elapsed.Seconds() }

// Op is one call of a workload by one client; it returns how many values it processed.
type Op func(ctx context.Context, client int) (int, error)

// endSlack is how close to the run's deadline a DeadlineExceeded or Canceled answer
// still counts as the end of the run (the server sees the propagated deadline first).
const endSlack = 250 * time.Millisecond

// endOfRun reports whether err is the run's own deadline or cancellation, which is not
// a failure. The same codes earlier in the run are the service timing out under load:
// a failure, reported.
func endOfRun(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	code := status.Code(err)
	cut := code == codes.DeadlineExceeded || code == codes.Canceled ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
	dl, ok := ctx.Deadline()
	return cut && ok && time.Until(dl) < endSlack
}

// RunLoad calls op from clients goroutines for d and measures it.
func RunLoad(ctx context.Context, name string, batch, clients int, d time.Duration, op Op) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	values := 0
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := range clients {
		wg.Go(func() {
			mine, n, err := loop(ctx, w, op)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, mine...)
			values += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return Result{}, fmt.Errorf("%s: %w", name, firstErr)
	}
	if len(lat) == 0 {
		return Result{}, fmt.Errorf("%s: no call completed in %v", name, d)
	}
	slices.Sort(lat)
	return Result{
		Name: name, Batch: batch, Clients: clients, Calls: len(lat), Values: values, Elapsed: elapsed,
		P50: lat[len(lat)/2], P99: lat[min(len(lat)-1, len(lat)*99/100)], P999: lat[min(len(lat)-1, len(lat)*999/1000)],
	}, nil
}

// loop runs one client until the run ends; a failure other than the end of the run
// is returned.
func loop(ctx context.Context, client int, op Op) ([]time.Duration, int, error) {
	var lat []time.Duration
	n := 0
	for ctx.Err() == nil {
		t0 := time.Now()
		k, err := op(ctx, client)
		if err != nil {
			if endOfRun(ctx, err) {
				return lat, n, nil
			}
			return lat, n, err
		}
		lat = append(lat, time.Since(t0))
		n += k
	}
	return lat, n, nil
}
