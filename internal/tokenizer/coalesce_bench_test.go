package tokenizer_test

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/store/coalesce"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// BenchmarkConcurrentSingleValues is 8 callers per GOMAXPROCS (16 on 2 cores), each
// tokenizing one new value, then detokenizing its token, one request each, with
// coalescing off and on: the database work that coalescing merges, without the
// transport and the audit log.
func BenchmarkConcurrentSingleValues(b *testing.B) {
	for _, window := range []time.Duration{0, time.Millisecond} {
		b.Run(fmt.Sprintf("window=%s", window), func(b *testing.B) {
			var c *coalesce.Store
			e, _ := newEngineWith(b, func(st *store.Store) tokenizer.Store {
				c = coalesce.New(st, coalesce.Options{Window: window, MaxItems: 256})
				return coalescedPG{Store: st, c: c}
			})
			var seed atomic.Uint64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(seed.Add(1), 7))
				for pb.Next() {
					res, err := e.Tokenize(b.Context(), ssns(rng, 1), 0)
					if err != nil || res[0].Err != nil {
						b.Fatal(err, res[0].Err)
					}
					if _, err := e.Detokenize(b.Context(), []tokenizer.DetokenizeItem{{Class: "ssn", Token: res[0].Token}}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "roundtrips/s")
			b.ReportMetric(float64(c.Merged())/float64(b.N), "merged-stmts/op")
		})
	}
}
