package fhir

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
)

// Item is one value (or, to reveal, one token) of a class, with the patient subject it
// belongs to ("" when the resource is in no patient compartment).
type Item struct {
	Class, Value, Subject string
	// ID marks a resource id or the id part of a reference (else a value of a rule).
	ID bool
	// Bound marks a value of a rule with subject: patient: it belongs to Subject as an id
	// of the patient does (tokenized bound to the subject, erased with it).
	Bound bool
}

// Tokenized is the per-item outcome of Tokenizer.Tokenize.
type Tokenized struct {
	Token string
	Err   error // names the class, never the value
}

// Reveal says what a caller may see of a token.
type Reveal int

// Reveal outcomes: the value, a masked value (detokenize_masked), or nothing (the field
// stays tokenized).
const (
	RevealClear Reveal = iota
	RevealMasked
	RevealWithheld
)

// Revealed is the per-item outcome of Tokenizer.Detokenize.
type Revealed struct {
	Value   string // the value (RevealClear) or its masked form (RevealMasked)
	Outcome Reveal
	Err     error
}

// Tokenizer is the token service as this package needs it. The transport layer plugs in
// the engine together with the caller's authorization: Detokenize answers RevealMasked or
// RevealWithheld per item for classes the caller may not reveal, instead of failing the
// batch. A returned error fails the whole batch (the service is unavailable).
type Tokenizer interface {
	Tokenize(ctx context.Context, items []Item) ([]Tokenized, error)
	Detokenize(ctx context.Context, items []Item) ([]Revealed, error)
	// Mask returns value as the class's mask rule shows it (***-**-6789).
	Mask(class, value string) (string, error)
}

// Offsets is the source of per-patient date-shift offsets, in days. Contract for
// implementations: an offset is drawn once per subject, uniformly at random within
// ±MaxDays and never 0, from a cryptographic source (not derived from the subject); it is
// stored so that every request, replica and restart sees the same value (the service
// stores it encrypted under the subject's key, so erasing the subject erases it); with
// create false, unknown subjects are absent from the result (re-identification never
// creates offsets). Concurrent first uses of one subject must agree on one offset.
type Offsets interface {
	Offsets(ctx context.Context, subjects []string, create bool) (map[string]int, error)
}

// MemoryOffsets is an in-memory Offsets for tests and single-process tools; offsets are
// lost when the process ends.
type MemoryOffsets struct {
	maxDays int
	mu      sync.Mutex
	m       map[string]int
}

// NewMemoryOffsets returns an in-memory offset source drawing within ±maxDays.
func NewMemoryOffsets(maxDays int) (*MemoryOffsets, error) {
	if maxDays < 1 || maxDays > 3650 {
		return nil, fmt.Errorf("date shift range must be 1..3650 days, got %d", maxDays)
	}
	return &MemoryOffsets{maxDays: maxDays, m: map[string]int{}}, nil
}

// Offsets implements Offsets.
func (o *MemoryOffsets) Offsets(_ context.Context, subjects []string, create bool) (map[string]int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(subjects))
	for _, s := range subjects {
		d, ok := o.m[s]
		if !ok && create {
			var err error
			if d, err = DrawOffset(o.maxDays); err != nil {
				return nil, err
			}
			o.m[s] = d
			ok = true
		}
		if ok {
			out[s] = d
		}
	}
	return out, nil
}

// DrawOffset draws an offset uniformly from [-maxDays, -1] ∪ [1, maxDays] with crypto/rand.
func DrawOffset(maxDays int) (int, error) {
	var b [8]byte
	n := uint64(2 * maxDays)
	limit := ^uint64(0) - ^uint64(0)%n // rejection sampling: no modulo bias
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("draw date shift offset: %w", err)
		}
		v := binary.BigEndian.Uint64(b[:])
		if v >= limit {
			continue
		}
		d := int(v%n) - maxDays // -maxDays .. maxDays-1
		if d >= 0 {
			d++ // skip 0: 1 .. maxDays
		}
		return d, nil
	}
}
