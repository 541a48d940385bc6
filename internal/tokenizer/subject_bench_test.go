package tokenizer_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// newSubjectEngine is newEngine with subjects on, their keys in a local directory.
func newSubjectEngine(b *testing.B) *tokenizer.Engine {
	e, st := newEngine(b)
	dir := b.TempDir()
	p, _, err := keys.OpenLocal(filepath.Join(dir, "kek"))
	if err != nil {
		b.Fatal(err)
	}
	v, err := keys.NewLocalSubjects(filepath.Join(dir, "subjects"), p)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.EnableSubjects(st, v, "", time.Minute); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkTokenizeSubjects measures tokenize with subjects on PostgreSQL: a batch of
// one known subject (its key cached), and batches where every item is a new subject (a
// key created in the provider and a subject row per item).
func BenchmarkTokenizeSubjects(b *testing.B) {
	e := newSubjectEngine(b)
	for _, tc := range []struct {
		name     string
		n        int
		subjects func(i, round int) string
	}{
		{"known_subject/batch1000", 1000, func(int, int) string { return "MRN-00000001" }},
		{"new_subject_each/batch100", 100, func(i, round int) string { return fmt.Sprintf("P-%d-%d", round, i) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(2, uint64(tc.n)))
			b.ReportAllocs()
			round := 0
			for b.Loop() {
				items := ssns(rng, tc.n)
				for i := range items {
					items[i].Subject = tc.subjects(i, round)
				}
				round++
				if _, err := e.Tokenize(b.Context(), items, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(tc.n*b.N)/b.Elapsed().Seconds(), "values/s")
		})
	}
}

// BenchmarkDetokenizeSubjects reveals batches of 1000 tokens of one subject.
func BenchmarkDetokenizeSubjects(b *testing.B) {
	e := newSubjectEngine(b)
	rng := rand.New(rand.NewPCG(3, 3))
	items := ssns(rng, 1000)
	for i := range items {
		items[i].Subject = "MRN-00000002"
	}
	res, err := e.Tokenize(b.Context(), items, 0)
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]tokenizer.DetokenizeItem, len(res))
	for i, r := range res {
		reqs[i] = tokenizer.DetokenizeItem{Class: "ssn", Token: r.Token}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Detokenize(b.Context(), reqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(reqs)*b.N)/b.Elapsed().Seconds(), "values/s")
}
