// Package cache is a bounded, in-process cache of token mappings around a
// tokenizer.Store: a decorator (spicedb's habit), not code inside the store. It holds
// rows as stored (the value and the token only encrypted, never plaintext), so a
// reveal of a seen token and a tokenize of a seen static value need no database round
// trip. Entries are invalidated on delete and purge locally, by every replica through
// the store's invalidation feed (PostgreSQL LISTEN/NOTIFY, sent in the deleting
// transaction), entirely when the feed reconnects or a flush is published (key
// re-encryption, subject erasure), and after their lifetime at the latest: that
// lifetime is the bound on how long another replica may still answer from a stale entry
// when the feed itself fails.
package cache

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/phivault/tokenizer/internal/tokenizer"
)

// Invalidation is one message of the feed: digests of deleted rows (by class), or a
// flush of everything.
type Invalidation struct {
	Refs  []tokenizer.Ref
	Flush bool
}

// Feed delivers the invalidations that any replica publishes. Listen calls fn until
// ctx ends; after a lost connection it calls fn with Flush, since messages may have
// been missed.
type Feed interface {
	ListenInvalidations(ctx context.Context, fn func(Invalidation)) error
}

// Options size the cache.
type Options struct {
	Entries int           // per index (token digest, value fingerprint)
	TTL     time.Duration // the longest an entry is trusted
}

// Store is the caching decorator. Methods it does not override go to the inner store.
type Store struct {
	tokenizer.Store
	byDigest, byFP *lru
	now            func() time.Time
	hits, misses   atomic.Int64
}

// New returns a cache around inner.
func New(inner tokenizer.Store, o Options) *Store {
	return &Store{Store: inner, byDigest: newLRU(o.Entries, o.TTL), byFP: newLRU(o.Entries, o.TTL), now: time.Now}
}

// Stats returns the hits and misses so far (for metrics).
func (s *Store) Stats() (hits, misses int64) { return s.hits.Load(), s.misses.Load() }

// Len is the number of entries held.
func (s *Store) Len() int { return s.byDigest.len() + s.byFP.len() }

func fpKey(m tokenizer.Mapping) string {
	return tokenizer.FingerprintRef{Class: m.Class, Scope: m.Scope, Fingerprint: m.Fingerprint}.Key()
}

func (s *Store) remember(m tokenizer.Mapping) {
	now := s.now()
	if m.CreatedAt.IsZero() {
		m.CreatedAt = now // a row just written: the store's time, near enough
	}
	if m.ValueCT != nil {
		s.byDigest.put(tokenizer.RefKey(m.Class, m.TokenDigest), &m, now)
	}
	if m.Fingerprint != nil && m.TokenCT != nil {
		s.byFP.put(fpKey(m), &m, now)
	}
}

// LookupTokens answers cached rows and asks the inner store for the rest.
func (s *Store) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	return lookupThrough(ctx, s, s.byDigest, refs, s.Store.LookupTokens, func(_ string, m tokenizer.Mapping) { s.remember(m) })
}

// PeekFingerprints returns the cached static mappings of refs, without asking the
// inner store (tokenizer.FingerprintPeeker). Only hits are counted: a value not found
// here is counted when the tokenize that follows looks it up.
func (s *Store) PeekFingerprints(refs []tokenizer.FingerprintRef) map[string]tokenizer.Mapping {
	out, _ := held(s.byFP, refs, s.now())
	s.count(len(out), 0)
	return out
}

// held returns the mappings of refs that idx holds, by key, and the refs it does not.
func held[R interface{ Key() string }](idx *lru, refs []R, now time.Time) (map[string]tokenizer.Mapping, []R) {
	out := make(map[string]tokenizer.Mapping, len(refs))
	var miss []R
	for _, r := range refs {
		if m, ok := idx.get(r.Key(), now); ok {
			out[r.Key()] = m
			continue
		}
		miss = append(miss, r)
	}
	return out, miss
}

// LookupFingerprints answers cached rows and asks the inner store for the rest.
func (s *Store) LookupFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (map[string]tokenizer.Mapping, error) {
	return lookupThrough(ctx, s, s.byFP, refs, s.Store.LookupFingerprints, func(k string, m tokenizer.Mapping) { s.byFP.put(k, &m, s.now()) })
}

// lookupThrough answers the refs idx holds and asks inner for the rest, keeping what it
// returns.
func lookupThrough[R interface{ Key() string }](ctx context.Context, s *Store, idx *lru, refs []R,
	inner func(context.Context, []R) (map[string]tokenizer.Mapping, error), keep func(string, tokenizer.Mapping)) (map[string]tokenizer.Mapping, error) {
	out, miss := held(idx, refs, s.now())
	s.count(len(refs)-len(miss), len(miss))
	if len(miss) == 0 {
		return out, nil
	}
	got, err := inner(ctx, miss)
	if err != nil {
		return nil, err
	}
	for k, m := range got {
		out[k] = m
		keep(k, m)
	}
	return out, nil
}

func (s *Store) count(hits, misses int) {
	s.hits.Add(int64(hits))
	s.misses.Add(int64(misses))
}

// InsertStatic answers values seen before from the cache (as the inner store would:
// not inserted, with the existing row) and sends only the others.
func (s *Store) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	inserted := make([]bool, len(ms))
	existing := map[string]tokenizer.Mapping{}
	var send []tokenizer.Mapping
	var at []int
	now := s.now()
	for i, m := range ms {
		if old, ok := s.byFP.get(fpKey(m), now); ok {
			existing[fpKey(m)] = old
			continue
		}
		send, at = append(send, m), append(at, i)
	}
	s.count(len(ms)-len(send), len(send))
	if len(send) == 0 {
		return inserted, existing, nil
	}
	ins, got, err := s.Store.InsertStatic(ctx, send)
	if err != nil {
		return nil, nil, err
	}
	for k, i := range at {
		inserted[i] = ins[k]
		if ins[k] {
			s.remember(send[k])
		}
	}
	for k, m := range got {
		existing[k] = m
		s.byFP.put(k, &m, s.now())
	}
	return inserted, existing, nil
}

// InsertMappings remembers what went in, so that a reveal right after needs no trip.
func (s *Store) InsertMappings(ctx context.Context, ms []tokenizer.Mapping) ([]bool, error) {
	ins, err := s.Store.InsertMappings(ctx, ms)
	if err != nil {
		return nil, err
	}
	for i, ok := range ins {
		if ok {
			s.remember(ms[i])
		}
	}
	return ins, nil
}

// DeleteTokens forgets the rows here first (the inner store tells the other replicas).
func (s *Store) DeleteTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]bool, error) {
	s.forget(refs)
	deleted, err := s.Store.DeleteTokens(ctx, refs)
	s.forget(refs) // a concurrent reveal may have put one back meanwhile
	return deleted, err
}

// PurgeExpiredFingerprints forgets the purged values' rows.
func (s *Store) PurgeExpiredFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (int64, error) {
	for _, r := range refs {
		if m, ok := s.byFP.remove(r.Key()); ok {
			s.byDigest.remove(tokenizer.RefKey(m.Class, m.TokenDigest))
		}
	}
	return s.Store.PurgeExpiredFingerprints(ctx, refs)
}

func (s *Store) forget(refs []tokenizer.Ref) {
	for _, r := range refs {
		if m, ok := s.byDigest.remove(r.Key()); ok && m.Fingerprint != nil {
			s.byFP.remove(fpKey(m))
		}
	}
}

// Flush forgets everything.
func (s *Store) Flush() {
	s.byDigest.clear()
	s.byFP.clear()
}

// Follow applies the feed's invalidations until ctx ends, reconnecting with backoff.
func (s *Store) Follow(ctx context.Context, feed Feed, log *slog.Logger) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := feed.ListenInvalidations(ctx, func(inv Invalidation) {
			backoff = 100 * time.Millisecond
			if inv.Flush {
				s.Flush()
				return
			}
			s.forget(inv.Refs)
		})
		// Whatever ended the feed, messages may have been missed meanwhile.
		s.Flush()
		if ctx.Err() != nil {
			return
		}
		log.Warn("cache invalidation feed lost; cache flushed, reconnecting", slog.String("error", errString(err)))
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// Reencrypt re-encrypts through the inner store (when it can) and forgets everything:
// entries hold rows as they were stored.
func (s *Store) Reencrypt(ctx context.Context, current, limit int, fn func(m *tokenizer.Mapping) error) (int, error) {
	r, ok := s.Store.(tokenizer.Reencrypter)
	if !ok {
		return 0, errors.New("cache: the inner store cannot re-encrypt")
	}
	defer s.Flush()
	return r.Reencrypt(ctx, current, limit, fn)
}

// ForgetSubject erases a subject through the inner store (when it keeps subjects) and
// forgets everything: entries of the subject's mappings must not outlive it here, and
// the inner store tells the other replicas.
func (s *Store) ForgetSubject(ctx context.Context, id int64) (map[string]int64, error) {
	f, ok := s.Store.(interface {
		ForgetSubject(ctx context.Context, id int64) (map[string]int64, error)
	})
	if !ok {
		return nil, errors.New("cache: the inner store keeps no subjects")
	}
	defer s.Flush()
	return f.ForgetSubject(ctx, id)
}
