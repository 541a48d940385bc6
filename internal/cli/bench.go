package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// benchResult is one measured workload.
type benchResult struct {
	name     string
	batch    int
	calls    int
	values   int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r benchResult) valuesPerSec() float64 { return float64(r.values) / r.elapsed.Seconds() }

// runLoad calls op from clients goroutines for d and measures it. op returns the
// number of values it processed.
func runLoad(ctx context.Context, name string, batch, clients int, d time.Duration, op func(ctx context.Context, worker int) (int, error)) (benchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	values := 0
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			n := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				k, err := op(ctx, w)
				if err != nil {
					// The server may report the deadline a moment before the client's
					// context notices it: that is the end of the run, not a failure.
					code := status.Code(err)
					if ctx.Err() == nil && code != codes.DeadlineExceeded && code != codes.Canceled && !errors.Is(err, context.DeadlineExceeded) {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
					break
				}
				mine = append(mine, time.Since(t0))
				n += k
			}
			mu.Lock()
			lat = append(lat, mine...)
			values += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return benchResult{}, fmt.Errorf("%s: %w", name, firstErr)
	}
	if len(lat) == 0 {
		return benchResult{}, fmt.Errorf("%s: no call completed in %v", name, d)
	}
	slices.Sort(lat)
	return benchResult{
		name: name, batch: batch, calls: len(lat), values: values, elapsed: elapsed,
		p50: lat[len(lat)/2], p99: lat[min(len(lat)-1, len(lat)*99/100)],
	}, nil
}

// ssnValues makes n distinct random valid SSNs.
func ssnValues(rng *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		area := 1 + rng.IntN(665)
		out[i] = fmt.Sprintf("%03d-%02d-%04d", area, 1+rng.IntN(99), 1+rng.IntN(9999))
	}
	return out
}

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "file" {
		return benchFile(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("grpc", "127.0.0.1:9090", "tokenizer gRPC address")
	vaultAddr := fs.String("vault-addr", "", "Vault address for the Transit baseline (empty: no baseline)")
	vaultToken := fs.String("vault-token", "", "Vault token for the baseline (needs transit write)")
	duration := fs.Duration("duration", 5*time.Second, "how long each workload runs")
	clients := fs.Int("clients", 4, "concurrent clients")
	batchList := fs.String("batches", "1,100,1000", "batch sizes")
	static := fs.String("static-class", "ssn", "static class to measure")
	dynamic := fs.String("dynamic-class", "ssn_dynamic", "dynamic class to measure")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	var batches []int
	for _, s := range strings.Split(*batchList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "tokenizer bench: --batches: %q is not a positive number\n", s)
			return exitUsage
		}
		batches = append(batches, n)
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		fmt.Fprintf(stderr, "tokenizer bench: %v\n", err)
		return exitFailure
	}
	defer conn.Close()
	tc := tokenizerv1.NewTokenizerServiceClient(conn)

	var vc *api.Client
	if *vaultAddr != "" {
		cfg := api.DefaultConfig()
		cfg.Address = *vaultAddr
		if vc, err = api.NewClient(cfg); err != nil {
			fmt.Fprintf(stderr, "tokenizer bench: vault: %v\n", err)
			return exitFailure
		}
		vc.SetToken(*vaultToken)
		// Convergent encryption: the same value gives the same ciphertext, the
		// nearest Vault equivalent of a static token.
		if _, err := vc.Logical().WriteWithContext(ctx, "transit/keys/bench-convergent", map[string]any{
			"type": "aes256-gcm96", "derived": true, "convergent_encryption": true,
		}); err != nil {
			fmt.Fprintf(stderr, "tokenizer bench: vault: create convergent key: %v\n", err)
			return exitFailure
		}
	}

	var results []benchResult
	fail := func(err error) int {
		fmt.Fprintf(stderr, "tokenizer bench: %v\n", err)
		return exitFailure
	}
	for _, b := range batches {
		for _, class := range []string{*static, *dynamic} {
			rngs := make([]*rand.Rand, *clients)
			for i := range rngs {
				rngs[i] = rand.New(rand.NewPCG(uint64(b), uint64(i)+uint64(len(class))))
			}
			// Tokenize fresh values: every item is a new mapping (the write path).
			r, err := runLoad(ctx, "tokenize "+class, b, *clients, *duration, func(ctx context.Context, w int) (int, error) {
				req := &tokenizerv1.TokenizeRequest{Items: make([]*tokenizerv1.TokenizeItem, b)}
				for i, v := range ssnValues(rngs[w], b) {
					req.Items[i] = &tokenizerv1.TokenizeItem{Class: class, Value: v}
				}
				_, err := tc.Tokenize(ctx, req)
				return b, err
			})
			if err != nil {
				return fail(err)
			}
			results = append(results, r)

			// Detokenize from a pool of tokens made first.
			pool := make([]string, 0, 4*b)
			var seen []string
			for len(pool) < max(4*b, 400) {
				req := &tokenizerv1.TokenizeRequest{}
				for _, v := range ssnValues(rngs[0], min(1000, max(4*b, 400)-len(pool))) {
					req.Items = append(req.Items, &tokenizerv1.TokenizeItem{Class: class, Value: v})
					seen = append(seen, v)
				}
				resp, err := tc.Tokenize(ctx, req)
				if err != nil {
					return fail(err)
				}
				for _, res := range resp.Results {
					pool = append(pool, res.Token)
				}
			}
			if class == *static {
				// Values tokenized before: the read path of a static class.
				r, err = runLoad(ctx, "tokenize "+class+" (seen values)", b, *clients, *duration, func(ctx context.Context, w int) (int, error) {
					req := &tokenizerv1.TokenizeRequest{Items: make([]*tokenizerv1.TokenizeItem, b)}
					off := rngs[w].IntN(len(seen) - b + 1)
					for i := range b {
						req.Items[i] = &tokenizerv1.TokenizeItem{Class: class, Value: seen[off+i]}
					}
					_, err := tc.Tokenize(ctx, req)
					return b, err
				})
				if err != nil {
					return fail(err)
				}
				results = append(results, r)
			}
			r, err = runLoad(ctx, "detokenize "+class, b, *clients, *duration, func(ctx context.Context, w int) (int, error) {
				req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: "HOPERAT", Items: make([]*tokenizerv1.DetokenizeItem, b)}
				off := rngs[w].IntN(len(pool) - b + 1)
				for i := range b {
					req.Items[i] = &tokenizerv1.DetokenizeItem{Class: class, Token: pool[off+i]}
				}
				_, err := tc.Detokenize(ctx, req)
				return b, err
			})
			if err != nil {
				return fail(err)
			}
			results = append(results, r)
		}
		if vc == nil {
			continue
		}
		rngs := make([]*rand.Rand, *clients)
		for i := range rngs {
			rngs[i] = rand.New(rand.NewPCG(uint64(b)+7, uint64(i)))
		}
		context64 := base64.StdEncoding.EncodeToString([]byte("ssn"))
		r, err := runLoad(ctx, "vault transit encrypt (convergent)", b, *clients, *duration, func(ctx context.Context, w int) (int, error) {
			in := make([]map[string]any, b)
			for i, v := range ssnValues(rngs[w], b) {
				in[i] = map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte(v)), "context": context64}
			}
			_, err := vc.Logical().WriteWithContext(ctx, "transit/encrypt/bench-convergent", map[string]any{"batch_input": in})
			return b, err
		})
		if err != nil {
			return fail(err)
		}
		results = append(results, r)
		in := make([]map[string]any, b)
		for i, v := range ssnValues(rngs[0], b) {
			in[i] = map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte(v)), "context": context64}
		}
		s, err := vc.Logical().WriteWithContext(ctx, "transit/encrypt/bench-convergent", map[string]any{"batch_input": in})
		if err != nil {
			return fail(err)
		}
		var cts []map[string]any
		for _, item := range s.Data["batch_results"].([]any) {
			ct := item.(map[string]any)["ciphertext"]
			cts = append(cts, map[string]any{"ciphertext": ct, "context": context64})
		}
		r, err = runLoad(ctx, "vault transit decrypt (convergent)", b, *clients, *duration, func(ctx context.Context, w int) (int, error) {
			_, err := vc.Logical().WriteWithContext(ctx, "transit/decrypt/bench-convergent", map[string]any{"batch_input": cts})
			return b, err
		})
		if err != nil {
			return fail(err)
		}
		results = append(results, r)
	}

	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\tbatch\tclients\tcalls/s\tvalues/s\tp50\tp99\n")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%v\t%v\n", r.name, r.batch, *clients,
			float64(r.calls)/r.elapsed.Seconds(), r.valuesPerSec(), r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond))
	}
	tw.Flush()
	if vc != nil {
		fmt.Fprintln(stdout, "\nratios (values/s, tokenizer ÷ Vault Transit convergent, same batch):")
		find := func(name string, b int) *benchResult {
			for i := range results {
				if results[i].name == name && results[i].batch == b {
					return &results[i]
				}
			}
			return nil
		}
		for _, b := range batches {
			enc, dec := find("vault transit encrypt (convergent)", b), find("vault transit decrypt (convergent)", b)
			for _, class := range []string{*static, *dynamic} {
				for _, name := range []string{"tokenize " + class, "tokenize " + class + " (seen values)"} {
					if t := find(name, b); t != nil && enc != nil {
						fmt.Fprintf(stdout, "  batch %-5d %-30s ÷ encrypt: %.2f\n", b, name, t.valuesPerSec()/enc.valuesPerSec())
					}
				}
				if d := find("detokenize "+class, b); d != nil && dec != nil {
					fmt.Fprintf(stdout, "  batch %-5d %-30s ÷ decrypt: %.2f\n", b, "detokenize "+class, d.valuesPerSec()/dec.valuesPerSec())
				}
			}
		}
	}
	return exitOK
}
