package tokenizer_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// newEngine is an engine on a fresh database with the development classes.
func newEngine(tb testing.TB) (*tokenizer.Engine, *store.Store) {
	tb.Helper()
	return newEngineWith(tb, func(st *store.Store) tokenizer.Store { return st })
}

// newEngineWith is newEngine with the engine's token store wrapped by wrap.
func newEngineWith(tb testing.TB, wrap func(*store.Store) tokenizer.Store) (*tokenizer.Engine, *store.Store) {
	tb.Helper()
	st, err := store.Open(tb.Context(), pgtest.NewDatabase(tb), store.Options{MaxConns: 8, ConnectTimeout: 2 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	if _, err := st.Migrate(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	p, _, err := keys.OpenLocal(filepath.Join(tb.TempDir(), "kek"))
	if err != nil {
		tb.Fatal(err)
	}
	var classes []*tokenizer.Class
	for _, c := range config.DefaultClasses() {
		cl, err := tokenizer.Compile(c)
		if err != nil {
			tb.Fatal(err)
		}
		classes = append(classes, cl)
	}
	kr := keys.NewKeyring(p, st)
	if err := kr.Ensure(tb.Context(), tokenizer.KeyPurposes(classes)...); err != nil {
		tb.Fatal(err)
	}
	e, err := tokenizer.New(classes, wrap(st), kr, tokenizer.Limits{})
	if err != nil {
		tb.Fatal(err)
	}
	return e, st
}

func ssns(rng *rand.Rand, n int) []tokenizer.TokenizeItem {
	out := make([]tokenizer.TokenizeItem, n)
	for i := range out {
		out[i] = tokenizer.TokenizeItem{Class: "ssn", Value: fmt.Sprintf("%03d-%02d-%04d", 1+rng.IntN(665), 1+rng.IntN(99), 1+rng.IntN(9999))}
	}
	return out
}

func BenchmarkTokenize(b *testing.B) {
	e, _ := newEngine(b)
	for _, class := range []string{"ssn", "ssn_dynamic", "ssn_fpe"} {
		for _, n := range []int{1, 1000} {
			b.Run(fmt.Sprintf("%s/batch%d", class, n), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, uint64(n)))
				b.ReportAllocs()
				for b.Loop() {
					items := ssns(rng, n)
					for i := range items {
						items[i].Class = class
					}
					if _, err := e.Tokenize(b.Context(), items, 0); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "values/s")
			})
		}
	}
}

// BenchmarkVaultless measures a storage-none FF1 class: tokenize and reveal of 1,000
// values in memory (no row per value, so no database in the loop).
func BenchmarkVaultless(b *testing.B) {
	e, _ := newEngine(b)
	rng := rand.New(rand.NewPCG(3, 4))
	items := ssns(rng, 1000)
	for i := range items {
		items[i].Class = "ssn_vaultless"
	}
	res, err := e.Tokenize(b.Context(), items, 0)
	if err != nil {
		b.Fatal(err)
	}
	det := make([]tokenizer.DetokenizeItem, len(res))
	for i, r := range res {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
		det[i] = tokenizer.DetokenizeItem{Class: "ssn_vaultless", Token: r.Token}
	}
	b.Run("tokenize", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.Tokenize(b.Context(), items, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(items)*b.N)/b.Elapsed().Seconds(), "values/s")
	})
	b.Run("detokenize", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := e.Detokenize(b.Context(), det)
			if err != nil || out[0].Err != nil {
				b.Fatal(err, out[0].Err)
			}
		}
		b.ReportMetric(float64(len(det)*b.N)/b.Elapsed().Seconds(), "values/s")
	})
}
