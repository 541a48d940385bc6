package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/vault"
)

// Config is one benchmark run.
type Config struct {
	Batches      []int
	Clients      int
	Duration     time.Duration
	StaticClass  string
	DynamicClass string
}

// Runner runs the workloads against a service and, when Vault is set, the baseline.
type Runner struct {
	Config
	Service tokenizerv1.TokenizerServiceClient
	Vault   *vault.Client // nil: no baseline
	// Database, when set, is where the PostgreSQL floor of new static mappings is
	// measured beside the baseline (a scratch table, dropped after).
	Database *pgxpool.Pool
	// Admin is the service's admin address (host:port); when set, each workload also
	// reports the server's CPU seconds per 1,000 values and its RSS.
	Admin string
}

// measure runs one service workload and, with an admin address, what it cost the server.
func (r *Runner) measure(ctx context.Context, name string, b int, op Op) (Result, error) {
	var before ServerSample
	var err error
	if r.Admin != "" {
		if before, err = SampleServer(ctx, r.Admin); err != nil {
			return Result{}, err
		}
	}
	res, err := RunLoad(ctx, name, b, r.Clients, r.Duration, op)
	if err != nil || r.Admin == "" {
		return res, err
	}
	after, err := SampleServer(ctx, r.Admin)
	if err != nil {
		return Result{}, err
	}
	res.Server = &ServerUse{CPUSecondsPer1000: (after.CPUSeconds - before.CPUSeconds) / float64(res.Values) * 1000, RSSBytes: after.RSSBytes}
	return res, nil
}

const baselineKey = "bench-convergent"

// Run measures every workload, batch by batch.
func (r *Runner) Run(ctx context.Context) ([]Result, error) {
	if r.Vault != nil {
		if err := r.Vault.EnsureConvergentKey(ctx, baselineKey); err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
	}
	var results []Result
	for _, b := range r.Batches {
		for _, class := range []string{r.StaticClass, r.DynamicClass} {
			rs, err := r.service(ctx, class, b)
			if err != nil {
				return nil, err
			}
			results = append(results, rs...)
		}
		if r.Vault != nil {
			rs, err := r.baseline(ctx, b)
			if err != nil {
				return nil, err
			}
			results = append(results, rs...)
		}
		if r.Database != nil {
			res, err := r.floor(ctx, b)
			if err != nil {
				return nil, err
			}
			results = append(results, res)
		}
	}
	return results, nil
}

func (r *Runner) rngs(seed uint64, salt int) []*rand.Rand {
	out := make([]*rand.Rand, r.Clients)
	for i := range out {
		out[i] = rand.New(rand.NewPCG(seed, uint64(i)+uint64(salt)))
	}
	return out
}

// SSNValues makes n random valid SSNs (the values every workload tokenizes).
func SSNValues(rng *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%03d-%02d-%04d", 1+rng.IntN(665), 1+rng.IntN(99), 1+rng.IntN(9999))
	}
	return out
}

func (r *Runner) tokenizeOp(class string, b int, values func(client int) []string) Op {
	return func(ctx context.Context, w int) (int, error) {
		req := &tokenizerv1.TokenizeRequest{Items: make([]*tokenizerv1.TokenizeItem, b)}
		for i, v := range values(w) {
			req.Items[i] = &tokenizerv1.TokenizeItem{Class: class, Value: v}
		}
		_, err := r.Service.Tokenize(ctx, req)
		return b, err
	}
}

// service measures tokenize of new values (the write path), of values seen before
// (the read path of a static class) and detokenize, for one class and batch size.
func (r *Runner) service(ctx context.Context, class string, b int) ([]Result, error) {
	rngs := r.rngs(uint64(b), len(class))
	fresh, err := r.measure(ctx, "tokenize "+class, b,
		r.tokenizeOp(class, b, func(w int) []string { return SSNValues(rngs[w], b) }))
	if err != nil {
		return nil, err
	}
	out := []Result{fresh}
	seen, pool, err := r.tokenPool(ctx, class, rngs[0], max(4*b, 400))
	if err != nil {
		return nil, err
	}
	window := func(w, n int) int { return rngs[w].IntN(n - b + 1) }
	if class == r.StaticClass {
		res, err := r.measure(ctx, "tokenize "+class+" (seen values)", b,
			r.tokenizeOp(class, b, func(w int) []string { off := window(w, len(seen)); return seen[off : off+b] }))
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	res, err := r.measure(ctx, "detokenize "+class, b, func(ctx context.Context, w int) (int, error) {
		req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: "HOPERAT", Items: make([]*tokenizerv1.DetokenizeItem, b)}
		off := window(w, len(pool))
		for i := range b {
			req.Items[i] = &tokenizerv1.DetokenizeItem{Class: class, Token: pool[off+i]}
		}
		_, err := r.Service.Detokenize(ctx, req)
		return b, err
	})
	if err != nil {
		return nil, err
	}
	return append(out, res), nil
}

// tokenPool tokenizes n values first, for the seen-values and detokenize workloads.
func (r *Runner) tokenPool(ctx context.Context, class string, rng *rand.Rand, n int) (values, tokens []string, err error) {
	for len(tokens) < n {
		req := &tokenizerv1.TokenizeRequest{}
		for _, v := range SSNValues(rng, min(1000, n-len(tokens))) {
			req.Items = append(req.Items, &tokenizerv1.TokenizeItem{Class: class, Value: v})
			values = append(values, v)
		}
		resp, err := r.Service.Tokenize(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		for _, res := range resp.Results {
			tokens = append(tokens, res.Token)
		}
	}
	return values, tokens, nil
}

// baseline measures Vault Transit convergent encrypt and decrypt of the same kind of
// values at batch size b.
func (r *Runner) baseline(ctx context.Context, b int) ([]Result, error) {
	rngs := r.rngs(uint64(b)+7, 0)
	derivation := []byte("ssn")
	enc, err := RunLoad(ctx, "vault transit encrypt (convergent)", b, r.Clients, r.Duration, func(ctx context.Context, w int) (int, error) {
		_, err := r.Vault.EncryptBatch(ctx, baselineKey, derivation, SSNValues(rngs[w], b))
		return b, err
	})
	if err != nil {
		return nil, err
	}
	cts, err := r.Vault.EncryptBatch(ctx, baselineKey, derivation, SSNValues(rngs[0], b))
	if err != nil {
		return nil, err
	}
	dec, err := RunLoad(ctx, "vault transit decrypt (convergent)", b, r.Clients, r.Duration, func(ctx context.Context, _ int) (int, error) {
		return b, r.Vault.DecryptBatch(ctx, baselineKey, derivation, cts)
	})
	if err != nil {
		return nil, err
	}
	return []Result{enc, dec}, nil
}

// Report writes the results as a table and, with a baseline, the ratios of values/s.
func (r *Runner) Report(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\tbatch\tclients\tcalls/s\tvalues/s\tp50\tp99\tp99.9\tserver CPU s/1k values\tserver RSS MiB\n")
	for _, res := range results {
		cpu, rss := "-", "-"
		if res.Server != nil {
			cpu, rss = fmt.Sprintf("%.4f", res.Server.CPUSecondsPer1000), fmt.Sprintf("%.0f", res.Server.RSSBytes/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%v\t%v\t%v\t%s\t%s\n", res.Name, res.Batch, r.Clients,
			res.CallsPerSec(), res.ValuesPerSec(), res.P50.Round(10*time.Microsecond), res.P99.Round(10*time.Microsecond),
			res.P999.Round(10*time.Microsecond), cpu, rss)
	}
	tw.Flush()
	find := func(name string, b int) *Result {
		for i := range results {
			if results[i].Name == name && results[i].Batch == b {
				return &results[i]
			}
		}
		return nil
	}
	if r.Database != nil {
		fmt.Fprintln(w, "\nratios (values/s, tokenize of new values ÷ PostgreSQL floor, same batch):")
		for _, b := range r.Batches {
			f := find(FloorName, b)
			for _, class := range []string{r.StaticClass, r.DynamicClass} {
				if t := find("tokenize "+class, b); t != nil && f != nil {
					fmt.Fprintf(w, "  batch %-5d %-30s ÷ floor: %.2f\n", b, "tokenize "+class, t.ValuesPerSec()/f.ValuesPerSec())
				}
			}
		}
	}
	if r.Vault == nil {
		return
	}
	fmt.Fprintln(w, "\nratios (values/s, tokenizer ÷ Vault Transit convergent, same batch):")
	for _, b := range r.Batches {
		enc, dec := find("vault transit encrypt (convergent)", b), find("vault transit decrypt (convergent)", b)
		for _, class := range []string{r.StaticClass, r.DynamicClass} {
			for _, name := range []string{"tokenize " + class, "tokenize " + class + " (seen values)"} {
				if t := find(name, b); t != nil && enc != nil {
					fmt.Fprintf(w, "  batch %-5d %-30s ÷ encrypt: %.2f\n", b, name, t.ValuesPerSec()/enc.ValuesPerSec())
				}
			}
			if d := find("detokenize "+class, b); d != nil && dec != nil {
				fmt.Fprintf(w, "  batch %-5d %-30s ÷ decrypt: %.2f\n", b, "detokenize "+class, d.ValuesPerSec()/dec.ValuesPerSec())
			}
		}
	}
}
