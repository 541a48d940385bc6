package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
)

// memTokenizer is an in-memory test double for the token service ONLY (the engine, its
// store and the authorization decision are replaced; paths, profiles, dates, references
// and streaming are the real code). Static tokens per (class, value) shaped like the
// value: digits stay digits, hex letters stay hex letters, other letters stay letters of
// the same case, everything else is kept. Reveals follow per-class withheld/masked sets.
type memTokenizer struct {
	mu       sync.Mutex
	rng      *rand.Rand
	fwd      map[[2]string]string
	rev      map[[2]string]string
	withheld map[string]bool
	masked   map[string]bool
	items    int
	subjects map[string]bool
	failOn   string // a value whose tokenization fails (per item)
	// bySubject scopes static tokens by subject, as a subject-keyed engine may: the same
	// value of two subjects gets two tokens.
	bySubject bool
}

func newMemTokenizer() *memTokenizer {
	return &memTokenizer{rng: rand.New(rand.NewPCG(1, 2)), fwd: map[[2]string]string{}, rev: map[[2]string]string{},
		withheld: map[string]bool{}, masked: map[string]bool{}, subjects: map[string]bool{}}
}

func (m *memTokenizer) Tokenize(_ context.Context, items []Item) ([]Tokenized, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Tokenized, len(items))
	for i, it := range items {
		m.items++
		m.subjects[it.Subject] = true
		if m.failOn != "" && it.Value == m.failOn {
			out[i].Err = errors.New("class " + it.Class + ": value does not fit the class format")
			continue
		}
		k := [2]string{it.Class, it.Value}
		if m.bySubject {
			k[0] += "\x00" + it.Subject
		}
		if t, ok := m.fwd[k]; ok {
			out[i].Token = t
			continue
		}
		for {
			t := m.shape(it.Value)
			if _, taken := m.rev[[2]string{it.Class, t}]; !taken && t != it.Value {
				m.fwd[k], m.rev[[2]string{it.Class, t}] = t, it.Value
				out[i].Token = t
				break
			}
		}
	}
	return out, nil
}

func (m *memTokenizer) shape(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune('0' + rune(m.rng.IntN(10)))
		case r >= 'a' && r <= 'f':
			b.WriteRune('a' + rune(m.rng.IntN(6)))
		case r >= 'A' && r <= 'F':
			b.WriteRune('A' + rune(m.rng.IntN(6)))
		case r >= 'a' && r <= 'z':
			b.WriteRune('a' + rune(m.rng.IntN(26)))
		case r >= 'A' && r <= 'Z':
			b.WriteRune('A' + rune(m.rng.IntN(26)))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (m *memTokenizer) Detokenize(_ context.Context, items []Item) ([]Revealed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Revealed, len(items))
	for i, it := range items {
		m.items++
		v, ok := m.rev[[2]string{it.Class, it.Value}]
		switch {
		case !ok:
			out[i].Err = errors.New("class " + it.Class + ": token not found")
		case m.withheld[it.Class]:
			out[i] = Revealed{Outcome: RevealWithheld}
		case m.masked[it.Class]:
			mv, _ := m.Mask(it.Class, v)
			out[i] = Revealed{Value: mv, Outcome: RevealMasked}
		default:
			out[i] = Revealed{Value: v}
		}
	}
	return out, nil
}

// Mask keeps the last four letters or digits.
func (m *memTokenizer) Mask(_ string, v string) (string, error) {
	rs := []rune(v)
	keep := 4
	for i := len(rs) - 1; i >= 0; i-- {
		if r := rs[i]; r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			if keep > 0 {
				keep--
			} else {
				rs[i] = '*'
			}
		}
	}
	return string(rs), nil
}

type jsonNumber = json.Number

// classesSeen lists the classes tokenized so far, sorted.
func (m *memTokenizer) classesSeen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := map[string]bool{}
	for k := range m.fwd {
		set[strings.SplitN(k[0], "\x00", 2)[0]] = true
	}
	var out []string
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
