package tokenizer

import (
	"context"
	"time"
)

// Mapping is one token vault row. Nothing in it is a value or a token in clear: the
// token is present only as its keyed digest, the value (and a static token) only
// encrypted.
type Mapping struct {
	Class              string
	Scope              string
	TokenDigest        []byte
	DigestVersion      int
	Fingerprint        []byte // static classes only
	FingerprintVersion int
	ValueCT            []byte
	TokenCT            []byte // static classes only
	KeyVersion         int    // 0 for a subject's row: ValueCT and TokenCT are under the subject's key
	Subject            int64  // the subject's ID; 0: none
	CreatedAt          time.Time
	ExpiresAt          *time.Time
}

// Ref names a mapping by class and token digest.
type Ref struct {
	Class  string
	Digest []byte
}

// RefKey is the map key that Store methods use for a class and token digest.
func RefKey(class string, digest []byte) string { return class + "\x00" + string(digest) }

// Key is the map key of r (RefKey).
func (r Ref) Key() string { return RefKey(r.Class, r.Digest) }

// FingerprintRef names a static mapping by class, scope and value fingerprint.
type FingerprintRef struct {
	Class, Scope string
	Fingerprint  []byte
}

// Key is the map key that Store methods use for a fingerprint.
func (r FingerprintRef) Key() string {
	return r.Class + "\x00" + r.Scope + "\x00" + string(r.Fingerprint)
}

// FingerprintPeeker is a Store that can answer static mappings by fingerprint from
// memory, without a trip to the database (the mapping cache). PeekFingerprints returns
// those it holds, keyed by FingerprintRef.Key, and never waits on I/O.
type FingerprintPeeker interface {
	PeekFingerprints(refs []FingerprintRef) map[string]Mapping
}

// Store is what the engine needs of the token vault. internal/store implements it on
// PostgreSQL, internal/store/memory in memory; internal/store/storetest is the suite
// both pass. Errors wrap errs.ErrUnavailable (cannot reach the database) or
// errs.ErrConflict (serialization failure or deadlock: safe to retry).
type Store interface {
	// InsertMappings inserts ms. A row whose token digest (or, for a static class, whose
	// fingerprint) already exists is skipped: inserted[i] reports whether ms[i] went in.
	InsertMappings(ctx context.Context, ms []Mapping) (inserted []bool, err error)
	// InsertStatic inserts static mappings and, in the same step, returns the live rows
	// that already held the fingerprint of an item (keyed by FingerprintRef.Key). An
	// item neither inserted nor found lost a race or collided, and is retried.
	InsertStatic(ctx context.Context, ms []Mapping) (inserted []bool, existing map[string]Mapping, err error)
	// LookupTokens returns the live (unexpired) rows among refs, keyed by Ref.Key.
	LookupTokens(ctx context.Context, refs []Ref) (map[string]Mapping, error)
	// LookupFingerprints returns the live static rows among refs, keyed by
	// FingerprintRef.Key.
	LookupFingerprints(ctx context.Context, refs []FingerprintRef) (map[string]Mapping, error)
	// PurgeExpiredFingerprints deletes expired static rows among refs, so that a value
	// whose token expired can be tokenized afresh.
	PurgeExpiredFingerprints(ctx context.Context, refs []FingerprintRef) (int64, error)
	// DeleteTokens deletes the rows named by refs and returns the keys deleted.
	DeleteTokens(ctx context.Context, refs []Ref) (map[string]bool, error)
}

// Reencrypter is what re-encryption needs of the token vault: up to limit rows below
// the current value-key version, each rewritten by fn, in one transaction.
type Reencrypter interface {
	Reencrypt(ctx context.Context, current, limit int, fn func(m *Mapping) error) (int, error)
	CountByKeyVersion(ctx context.Context) (map[int]int64, error)
}
