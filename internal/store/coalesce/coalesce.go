// Package coalesce merges concurrent small calls to the token vault into one
// statement: a decorator around a tokenizer.Store (beneath the mapping cache, so that
// cache hits never wait). While a statement of an operation runs, the calls of that
// operation that arrive queue for the next one, which goes when the running ones
// finish, when the window has passed since the first queued call or when it holds
// MaxItems items; each caller then gets its own part of the result back. The store's
// statements already take one row per item, of any class, so a merged call is the
// same statement with more rows: the conflict rules of static and dynamic tokens are
// the store's, whoever the rows came from.
package coalesce

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/phivault/tokenizer/internal/tokenizer"
)

// Options tune the coalescing.
type Options struct {
	// Window is the longest a call waits for others while a statement of its operation
	// runs; 0 turns coalescing off.
	Window time.Duration
	// MaxItems bounds the items of a merged statement; a call of this many items or
	// more goes by itself.
	MaxItems int
}

// Observer is told of every statement of a coalesced operation: its operation, how
// many calls it carried (1: it went alone) and how many items. It sees no item.
type Observer func(op string, calls, items int)

// Operation names, for metrics.
const (
	OpLookupTokens       = "lookup_tokens"
	OpLookupFingerprints = "lookup_fingerprints"
	OpInsertStatic       = "insert_static"
	OpInsertMappings     = "insert_mappings"
)

// Store is the coalescing decorator. Methods it does not override go to the inner
// store.
type Store struct {
	tokenizer.Store
	lookTokens *group[tokenizer.Ref, map[string]tokenizer.Mapping]
	lookFPs    *group[tokenizer.FingerprintRef, map[string]tokenizer.Mapping]
	insStatic  *group[tokenizer.Mapping, staticResult]
	insDynamic *group[tokenizer.Mapping, []bool]

	observer atomic.Pointer[Observer]
	merged   atomic.Int64 // statements that carried two calls or more
	retried  atomic.Int64 // merged statements that failed and whose calls ran alone
}

// staticResult is what InsertStatic returns.
type staticResult struct {
	inserted []bool
	existing map[string]tokenizer.Mapping
}

// New returns a coalescing store around inner.
func New(inner tokenizer.Store, o Options) *Store {
	s := &Store{Store: inner}
	s.lookTokens = newGroup(s, o, OpLookupTokens, inner.LookupTokens, splitMap[tokenizer.Ref, map[string]tokenizer.Mapping])
	s.lookFPs = newGroup(s, o, OpLookupFingerprints, inner.LookupFingerprints, splitMap[tokenizer.FingerprintRef, map[string]tokenizer.Mapping])
	s.insStatic = newGroup(s, o, OpInsertStatic, func(ctx context.Context, ms []tokenizer.Mapping) (staticResult, error) {
		ins, ex, err := inner.InsertStatic(ctx, ms)
		return staticResult{ins, ex}, err
	}, splitStatic)
	s.insDynamic = newGroup(s, o, OpInsertMappings, inner.InsertMappings, func(merged []bool, c *call[tokenizer.Mapping, []bool]) []bool {
		return merged[c.off : c.off+len(c.in) : c.off+len(c.in)]
	})
	return s
}

func newGroup[Q, R any](s *Store, o Options, op string, inner func(context.Context, []Q) (R, error), split func(R, *call[Q, R]) R) *group[Q, R] {
	return &group[Q, R]{op: op, s: s, window: o.Window, max: max(o.MaxItems, 1), inner: inner, split: split}
}

// SetObserver has o told of every merged statement from now on.
func (s *Store) SetObserver(o Observer) { s.observer.Store(&o) }

// Merged is how many statements carried two calls or more so far.
func (s *Store) Merged() int64 { return s.merged.Load() }

// Queued is how many calls wait for their operation's next statement now.
func (s *Store) Queued() int {
	return s.lookTokens.queued() + s.lookFPs.queued() + s.insStatic.queued() + s.insDynamic.queued()
}

// Retried is how many merged statements failed so that their calls ran again alone.
func (s *Store) Retried() int64 { return s.retried.Load() }

func (s *Store) observe(op string, calls, items int) {
	if calls > 1 {
		s.merged.Add(1)
	}
	if o := s.observer.Load(); o != nil {
		(*o)(op, calls, items)
	}
}

// LookupTokens merges concurrent lookups by token digest.
func (s *Store) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	return s.lookTokens.do(ctx, refs)
}

// LookupFingerprints merges concurrent lookups by value fingerprint.
func (s *Store) LookupFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (map[string]tokenizer.Mapping, error) {
	return s.lookFPs.do(ctx, refs)
}

// InsertStatic merges concurrent static inserts. The same value in two calls is two
// rows of one statement: one goes in, and the other, neither inserted nor found (the
// statement's snapshot predates the first), is adopted by the engine as it adopts a
// concurrent writer's row.
func (s *Store) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	r, err := s.insStatic.do(ctx, ms)
	return r.inserted, r.existing, err
}

// InsertMappings merges concurrent dynamic inserts. A token digest drawn by two calls
// goes in for the first only; the other is reported not inserted and drawn again.
func (s *Store) InsertMappings(ctx context.Context, ms []tokenizer.Mapping) ([]bool, error) {
	return s.insDynamic.do(ctx, ms)
}

// splitMap keeps the entries of merged that c asked for.
func splitMap[Q interface{ Key() string }, R ~map[string]tokenizer.Mapping](merged R, c *call[Q, R]) R {
	out := make(R, len(c.in))
	for _, r := range c.in {
		if m, ok := merged[r.Key()]; ok {
			out[r.Key()] = m
		}
	}
	return out
}

func fpKey(m tokenizer.Mapping) string {
	return tokenizer.FingerprintRef{Class: m.Class, Scope: m.Scope, Fingerprint: m.Fingerprint}.Key()
}

// splitStatic gives c its inserted flags and the existing rows of its own values.
func splitStatic(merged staticResult, c *call[tokenizer.Mapping, staticResult]) staticResult {
	out := staticResult{
		inserted: merged.inserted[c.off : c.off+len(c.in) : c.off+len(c.in)],
		existing: map[string]tokenizer.Mapping{},
	}
	for _, m := range c.in {
		if e, ok := merged.existing[fpKey(m)]; ok {
			out.existing[fpKey(m)] = e
		}
	}
	return out
}

// Reencrypt re-encrypts through the inner store, when it can.
func (s *Store) Reencrypt(ctx context.Context, current, limit int, fn func(m *tokenizer.Mapping) error) (int, error) {
	r, ok := s.Store.(tokenizer.Reencrypter)
	if !ok {
		return 0, errors.New("coalesce: the inner store cannot re-encrypt")
	}
	return r.Reencrypt(ctx, current, limit, fn)
}

// CountByKeyVersion counts through the inner store, when it can.
func (s *Store) CountByKeyVersion(ctx context.Context) (map[int]int64, error) {
	r, ok := s.Store.(tokenizer.Reencrypter)
	if !ok {
		return nil, errors.New("coalesce: the inner store cannot re-encrypt")
	}
	return r.CountByKeyVersion(ctx)
}

// ForgetSubject erases a subject through the inner store, when it keeps subjects.
func (s *Store) ForgetSubject(ctx context.Context, id int64) (map[string]int64, error) {
	f, ok := s.Store.(interface {
		ForgetSubject(ctx context.Context, id int64) (map[string]int64, error)
	})
	if !ok {
		return nil, errors.New("coalesce: the inner store keeps no subjects")
	}
	return f.ForgetSubject(ctx, id)
}
