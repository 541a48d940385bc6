package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/bench"
	"github.com/phivault/tokenizer/internal/bulk"
)

// peakRSS is this process's peak resident set size in bytes.
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // Linux reports KiB
}

// benchFile times a tokenize-file job end to end, then measures the service's own
// batch Tokenize ceiling (fresh SSNs, the write path) with as many clients, in the same
// run, so the two figures can be compared.
func benchFile(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench file", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := &clientFlags{}
	cf.register(fs)
	var cols mappings
	j := &bulk.Job{Operation: bulk.Tokenize}
	fs.Var(&cols, "column", "NAME=CLASS (repeatable)")
	fs.StringVar(&j.Input, "input", "", "input file")
	fs.StringVar(&j.Format, "format", "", "csv, tsv, ndjson or parquet (default: from the file name)")
	fs.IntVar(&j.BatchItems, "batch", 1000, "values per request (also the ceiling's batch)")
	fs.IntVar(&j.Concurrency, "concurrency", 4, "requests in flight (also the ceiling's clients)")
	duration := fs.Duration("duration", 10*time.Second, "how long the ceiling workload runs")
	class := fs.String("ceiling-class", "ssn", "class of the ceiling workload (SSN values)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	j.Columns = cols
	dir, err := os.MkdirTemp("", "tokenizer-bench-file")
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer bench file: %v\n", err)
		return exitFailure
	}
	defer os.RemoveAll(dir)
	j.Output = filepath.Join(dir, "out"+filepath.Ext(j.Input))
	j.MaxRejects = -1
	conn, err := cf.dial()
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer bench file: %v\n", err)
		return exitUsage
	}
	defer conn.Close()
	tc := tokenizerv1.NewTokenizerServiceClient(conn)
	sum, err := bulk.Run(ctx, j, bulk.Options{Client: tc})
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer bench file: %v\n", err)
		return exitFailure
	}
	rss := peakRSS()
	values := 0
	for _, n := range sum.Values {
		values += n
	}
	rngs := make([]*rand.Rand, j.Concurrency)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
	}
	b := j.BatchItems
	ceil, err := bench.RunLoad(ctx, "tokenize "+*class, b, j.Concurrency, *duration, func(ctx context.Context, w int) (int, error) {
		req := &tokenizerv1.TokenizeRequest{Items: make([]*tokenizerv1.TokenizeItem, b)}
		for i, v := range bench.SSNValues(rngs[w], b) {
			req.Items[i] = &tokenizerv1.TokenizeItem{Class: *class, Value: v}
		}
		_, err := tc.Tokenize(ctx, req)
		return b, err
	})
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer bench file: ceiling: %v\n", err)
		return exitFailure
	}
	bulk.WriteSummary(stdout, sum)
	fileVPS := float64(values) / sum.Elapsed.Seconds()
	fmt.Fprintf(stdout, "file:    %d rows, %d values in %v: %.0f rows/s, %.0f values/s; client peak RSS %.1f MiB\n",
		sum.Records, values, sum.Elapsed.Round(time.Millisecond), sum.RowsPerSec(), fileVPS, float64(rss)/(1<<20))
	fmt.Fprintf(stdout, "ceiling: Tokenize batch %d, %d clients, fresh %s values: %.0f values/s (p50 %v, p99 %v)\n",
		b, j.Concurrency, *class, ceil.ValuesPerSec(), ceil.P50.Round(time.Millisecond), ceil.P99.Round(time.Millisecond))
	fmt.Fprintf(stdout, "ratio:   file values/s ÷ ceiling = %.2f\n", fileVPS/ceil.ValuesPerSec())
	return exitOK
}
