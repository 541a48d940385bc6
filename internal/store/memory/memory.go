// Package memory is an in-memory implementation of every storage interface the domain
// declares (tokenizer.Store, tokenizer.Reencrypter, audit.ChainStore, keys.Store). It
// keeps nothing across restarts: it exists for tests of the domain without PostgreSQL
// and as the reference the storetest conformance suite holds the PostgreSQL store to.
package memory

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/grant"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// Store is the in-memory store. The zero value is not usable: call New.
type Store struct {
	mu          sync.Mutex
	now         func() time.Time
	tokens      map[string]tokenizer.Mapping // by token digest, unique as in PostgreSQL
	byFP        map[string]string            // fingerprint → token digest
	dataKeys    []keys.WrappedKey
	events      []audit.Row
	checkpoints []audit.Checkpoint
	offsets     map[string]tokenizer.Offset
	subjects    map[int64]tokenizer.Subject
	lastSubject int64
	grants      map[string]*grant.Grant
}

var (
	_ tokenizer.Store       = (*Store)(nil)
	_ tokenizer.Reencrypter = (*Store)(nil)
	_ audit.ChainStore      = (*Store)(nil)
	_ keys.Store            = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{now: time.Now, tokens: map[string]tokenizer.Mapping{}, byFP: map[string]string{}, offsets: map[string]tokenizer.Offset{}}
}

func (s *Store) live(m tokenizer.Mapping) bool {
	return m.ExpiresAt == nil || m.ExpiresAt.After(s.now())
}

// insert adds m unless its token digest or fingerprint is taken.
func (s *Store) insert(m tokenizer.Mapping) bool {
	if _, taken := s.tokens[string(m.TokenDigest)]; taken {
		return false
	}
	if m.Fingerprint != nil {
		if _, taken := s.byFP[string(m.Fingerprint)]; taken {
			return false
		}
		s.byFP[string(m.Fingerprint)] = string(m.TokenDigest)
	}
	m.CreatedAt = s.now()
	s.tokens[string(m.TokenDigest)] = m
	return true
}

func (s *Store) remove(digest string) {
	if m, ok := s.tokens[digest]; ok {
		delete(s.byFP, string(m.Fingerprint))
		delete(s.tokens, digest)
	}
}

// InsertMappings implements tokenizer.Store.
func (s *Store) InsertMappings(ctx context.Context, ms []tokenizer.Mapping) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bool, len(ms))
	for i, m := range ms {
		out[i] = s.insert(m)
	}
	return out, ctx.Err()
}

// InsertStatic implements tokenizer.Store. As in PostgreSQL, the rows returned for the
// items not inserted are those that held their fingerprint before the call began.
func (s *Store) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := map[string]tokenizer.Mapping{}
	for _, m := range ms {
		if d, ok := s.byFP[string(m.Fingerprint)]; ok {
			before[string(m.Fingerprint)] = s.tokens[d]
		}
	}
	inserted := make([]bool, len(ms))
	existing := map[string]tokenizer.Mapping{}
	for i, m := range ms {
		if inserted[i] = s.insert(m); inserted[i] {
			continue
		}
		if old, ok := before[string(m.Fingerprint)]; ok && s.live(old) && old.Class == m.Class && old.Scope == m.Scope {
			existing[tokenizer.FingerprintRef{Class: old.Class, Scope: old.Scope, Fingerprint: old.Fingerprint}.Key()] = old
		}
	}
	return inserted, existing, ctx.Err()
}

// LookupTokens implements tokenizer.Store.
func (s *Store) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]tokenizer.Mapping{}
	for _, r := range refs {
		if m, ok := s.tokens[string(r.Digest)]; ok && m.Class == r.Class && s.live(m) {
			out[r.Key()] = m
		}
	}
	return out, ctx.Err()
}

// LookupFingerprints implements tokenizer.Store.
func (s *Store) LookupFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (map[string]tokenizer.Mapping, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]tokenizer.Mapping{}
	for _, r := range refs {
		d, ok := s.byFP[string(r.Fingerprint)]
		if m := s.tokens[d]; ok && m.Class == r.Class && m.Scope == r.Scope && s.live(m) {
			out[r.Key()] = m
		}
	}
	return out, ctx.Err()
}

// PurgeExpiredFingerprints implements tokenizer.Store.
func (s *Store) PurgeExpiredFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range refs {
		d, ok := s.byFP[string(r.Fingerprint)]
		if m := s.tokens[d]; ok && m.Class == r.Class && m.Scope == r.Scope && !s.live(m) {
			s.remove(d)
			n++
		}
	}
	return n, ctx.Err()
}

// DeleteTokens implements tokenizer.Store.
func (s *Store) DeleteTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, r := range refs {
		if m, ok := s.tokens[string(r.Digest)]; ok && m.Class == r.Class {
			s.remove(string(r.Digest))
			out[r.Key()] = true
		}
	}
	return out, ctx.Err()
}

// Reencrypt implements tokenizer.Reencrypter: all or nothing, like the transaction of
// the PostgreSQL store.
func (s *Store) Reencrypt(ctx context.Context, current, limit int, fn func(m *tokenizer.Mapping) error) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var digests []string
	for d, m := range s.tokens {
		if m.KeyVersion < current && m.Subject == 0 {
			digests = append(digests, d)
		}
	}
	slices.Sort(digests)
	digests = digests[:min(limit, len(digests))]
	moved := make([]tokenizer.Mapping, len(digests))
	for i, d := range digests {
		moved[i] = s.tokens[d]
		if err := fn(&moved[i]); err != nil {
			return 0, err
		}
	}
	for i, d := range digests {
		s.tokens[d] = moved[i]
	}
	return len(digests), ctx.Err()
}

// CountByKeyVersion implements tokenizer.Reencrypter.
func (s *Store) CountByKeyVersion(ctx context.Context) (map[int]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]int64{}
	for _, m := range s.tokens {
		if m.Subject == 0 {
			out[m.KeyVersion]++
		}
	}
	return out, ctx.Err()
}

// DataKeys implements keys.Store.
func (s *Store) DataKeys(ctx context.Context) ([]keys.WrappedKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.dataKeys)
	slices.SortFunc(out, func(a, b keys.WrappedKey) int {
		if a.Purpose != b.Purpose {
			return bytes.Compare([]byte(a.Purpose), []byte(b.Purpose))
		}
		return a.Version - b.Version
	})
	return out, ctx.Err()
}

// InsertDataKey implements keys.Store.
func (s *Store) InsertDataKey(ctx context.Context, k keys.WrappedKey) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.dataKeys {
		if o.Purpose == k.Purpose && o.Version == k.Version {
			return false, ctx.Err()
		}
	}
	k.CreatedAt = s.now()
	s.dataKeys = append(s.dataKeys, k)
	return true, ctx.Err()
}

// ReplaceWrapped implements keys.Store: a key whose wrapped form changed meanwhile is
// a conflict (errs.ErrConflict).
func (s *Store) ReplaceWrapped(ctx context.Context, p keys.Purpose, version int, old, wrapped []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range s.dataKeys {
		if k.Purpose == p && k.Version == version && bytes.Equal(k.Wrapped, old) {
			s.dataKeys[i].Wrapped = wrapped
			return ctx.Err()
		}
	}
	return errs.ErrConflict
}

var _ tokenizer.OffsetStore = (*Store)(nil)

// LoadOffsets implements tokenizer.OffsetStore.
func (s *Store) LoadOffsets(ctx context.Context, digests [][]byte) (map[string]tokenizer.Offset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]tokenizer.Offset{}
	for _, d := range digests {
		if o, ok := s.offsets[string(d)]; ok {
			out[string(d)] = o
		}
	}
	return out, ctx.Err()
}

// InsertOffsets implements tokenizer.OffsetStore: an existing row wins.
func (s *Store) InsertOffsets(ctx context.Context, rows []tokenizer.Offset) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		if _, ok := s.offsets[string(r.SubjectDigest)]; !ok {
			s.offsets[string(r.SubjectDigest)] = r
		}
	}
	return ctx.Err()
}
