package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phivault/tokenizer/internal/tokenizer"
)

// InsertStatic inserts ms (static mappings) in one statement and, in the same round
// trip, returns the live rows that already held the fingerprint of an item before the
// statement began, keyed by tokenizer.FingerprintRef.Key. inserted[i] reports whether ms[i] went
// in. An item neither inserted nor found lost a race to a concurrent writer (or hit a
// token collision) and is retried by the caller.
func (s *Store) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) (inserted []bool, existing map[string]tokenizer.Mapping, err error) {
	sorted, perm := sortForLocks(ms)
	err = retryConflicts(ctx, func() error {
		var e error
		inserted, existing, e = s.insertStatic(ctx, sorted)
		return e
	})
	if err != nil {
		return nil, nil, err
	}
	// inserted follows the sorted order; put it back in the caller's.
	return unsort(perm, inserted), existing, nil
}

func (s *Store) insertStatic(ctx context.Context, ms []tokenizer.Mapping) (inserted []bool, existing map[string]tokenizer.Mapping, err error) {
	first := firstByDigest(ms)
	a := mappingArrays(ms, first)
	rows, err := s.pool.Query(ctx, `
		WITH q AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int4[], $5::bytea[], $6::int4[],
			                     $7::bytea[], $8::bytea[], $9::int4[], $10::timestamptz[], $11::int8[])
			         AS q(class, scope, token_digest, digest_version, fingerprint, fingerprint_version,
			              value_ct, token_ct, key_version, expires_at, subject_id)
		), ins AS (
			INSERT INTO tokens (class, scope, token_digest, digest_version, fingerprint, fingerprint_version,
			                    value_ct, token_ct, key_version, expires_at, subject_id)
			SELECT * FROM q
			ON CONFLICT DO NOTHING
			RETURNING class, token_digest
		)
		SELECT true, class, '', token_digest, NULL::bytea, NULL::bytea, 0, NULL::timestamptz, NULL::int8 FROM ins
		UNION ALL
		SELECT false, t.class, t.scope, t.token_digest, t.fingerprint, t.token_ct, t.key_version, t.expires_at, t.subject_id
		FROM (SELECT * FROM q WHERE NOT EXISTS (
		        SELECT 1 FROM ins WHERE ins.class = q.class AND ins.token_digest = q.token_digest)) AS lost
		JOIN tokens t ON t.class = lost.class AND t.scope = lost.scope AND t.fingerprint = lost.fingerprint
		WHERE t.expires_at IS NULL OR t.expires_at > now()`,
		a.classes, a.scopes, a.digests, a.dvers, a.fps, a.fpvers, a.vals, a.toks, a.kvers, a.exps, a.subjects)
	if err != nil {
		return nil, nil, classify("insert static mappings", err)
	}
	got := map[string]bool{}
	existing = map[string]tokenizer.Mapping{}
	var isNew bool
	var m tokenizer.Mapping
	var kv int32
	var subject *int64
	_, err = pgx.ForEachRow(rows, []any{&isNew, &m.Class, &m.Scope, &m.TokenDigest, &m.Fingerprint, &m.TokenCT, &kv, &m.ExpiresAt, &subject}, func() error {
		m.Subject = subjectID(subject)
		if isNew {
			got[tokenizer.RefKey(m.Class, m.TokenDigest)] = true
		} else {
			m.KeyVersion = int(kv)
			existing[tokenizer.FingerprintRef{Class: m.Class, Scope: m.Scope, Fingerprint: m.Fingerprint}.Key()] = m
		}
		m = tokenizer.Mapping{}
		return nil
	})
	if err != nil {
		return nil, nil, classify("insert static mappings", err)
	}
	return insertedOf(ms, first, got), existing, nil
}

type arrays struct {
	classes, scopes          []string
	digests, fps, vals, toks [][]byte
	dvers, kvers             []int32
	fpvers                   []*int32
	exps                     []*time.Time
	subjects                 []*int64
}

// firstByDigest reports, per mapping, whether its token digest is the first of its
// kind in ms. A later one is a random token drawn twice in one batch: it is left out of
// the statement and reported not inserted, so that the engine draws it again (the
// RETURNING rows name digests, and could not tell the two apart).
func firstByDigest(ms []tokenizer.Mapping) []bool {
	seen := make(map[string]bool, len(ms))
	first := make([]bool, len(ms))
	for i, m := range ms {
		first[i] = !seen[string(m.TokenDigest)]
		seen[string(m.TokenDigest)] = true
	}
	return first
}

func insertedOf(ms []tokenizer.Mapping, first []bool, got map[string]bool) []bool {
	inserted := make([]bool, len(ms))
	for i, m := range ms {
		inserted[i] = first[i] && got[tokenizer.RefKey(m.Class, m.TokenDigest)]
	}
	return inserted
}

// mappingArrays lays out the mappings whose keep flag is set as one array per column.
func mappingArrays(all []tokenizer.Mapping, keep []bool) arrays {
	var ms []tokenizer.Mapping
	for i, m := range all {
		if keep[i] {
			ms = append(ms, m)
		}
	}
	n := len(ms)
	a := arrays{
		classes: make([]string, n), scopes: make([]string, n), digests: make([][]byte, n), dvers: make([]int32, n),
		fps: make([][]byte, n), fpvers: make([]*int32, n), vals: make([][]byte, n), toks: make([][]byte, n),
		kvers: make([]int32, n), exps: make([]*time.Time, n), subjects: make([]*int64, n),
	}
	for i, m := range ms {
		a.classes[i], a.scopes[i], a.digests[i], a.dvers[i] = m.Class, m.Scope, m.TokenDigest, int32(m.DigestVersion)
		a.fps[i], a.vals[i], a.toks[i], a.kvers[i], a.exps[i] = m.Fingerprint, m.ValueCT, m.TokenCT, int32(m.KeyVersion), m.ExpiresAt
		if m.Fingerprint != nil {
			v := int32(m.FingerprintVersion)
			a.fpvers[i] = &v
		}
		if m.Subject != 0 {
			id := m.Subject
			a.subjects[i] = &id
		}
	}
	return a
}

// InsertMappings inserts ms in one statement. A row whose token digest (or, for static
// classes, fingerprint) already exists is skipped: inserted[i] reports whether ms[i]
// went in, so that the caller can retry token collisions or reuse the existing token.
func (s *Store) InsertMappings(ctx context.Context, ms []tokenizer.Mapping) (inserted []bool, err error) {
	sorted, perm := sortForLocks(ms)
	err = retryConflicts(ctx, func() error {
		var e error
		inserted, e = s.insertMappings(ctx, sorted)
		return e
	})
	if err != nil {
		return nil, err
	}
	return unsort(perm, inserted), nil
}

func (s *Store) insertMappings(ctx context.Context, ms []tokenizer.Mapping) (inserted []bool, err error) {
	first := firstByDigest(ms)
	a := mappingArrays(ms, first)
	rows, err := s.pool.Query(ctx, `
		INSERT INTO tokens (class, scope, token_digest, digest_version, fingerprint, fingerprint_version,
		                    value_ct, token_ct, key_version, expires_at, subject_id)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int4[], $5::bytea[], $6::int4[],
		                     $7::bytea[], $8::bytea[], $9::int4[], $10::timestamptz[], $11::int8[])
		ON CONFLICT DO NOTHING
		RETURNING class, token_digest`,
		a.classes, a.scopes, a.digests, a.dvers, a.fps, a.fpvers, a.vals, a.toks, a.kvers, a.exps, a.subjects)
	if err != nil {
		return nil, classify("insert mappings", err)
	}
	got := map[string]bool{}
	var class string
	var digest []byte
	_, err = pgx.ForEachRow(rows, []any{&class, &digest}, func() error {
		got[tokenizer.RefKey(class, digest)] = true
		return nil
	})
	if err != nil {
		return nil, classify("insert mappings", err)
	}
	return insertedOf(ms, first, got), nil
}

// LookupTokens returns the live (unexpired) rows among refs, keyed by RefKey.
func (s *Store) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	classes := make([]string, len(refs))
	digests := make([][]byte, len(refs))
	for i, r := range refs {
		classes[i], digests[i] = r.Class, r.Digest
	}
	rows, err := s.pool.Query(ctx, `
		SELECT t.class, t.scope, t.token_digest, t.digest_version, t.value_ct, t.key_version, t.created_at, t.expires_at, t.subject_id
		FROM tokens t
		JOIN unnest($1::text[], $2::bytea[]) AS q(class, digest)
		  ON t.class = q.class AND t.token_digest = q.digest
		WHERE t.expires_at IS NULL OR t.expires_at > now()`, classes, digests)
	if err != nil {
		return nil, classify("look up tokens", err)
	}
	out := map[string]tokenizer.Mapping{}
	var m tokenizer.Mapping
	var dv, kv int32
	var subject *int64
	_, err = pgx.ForEachRow(rows, []any{&m.Class, &m.Scope, &m.TokenDigest, &dv, &m.ValueCT, &kv, &m.CreatedAt, &m.ExpiresAt, &subject}, func() error {
		m.DigestVersion, m.KeyVersion, m.Subject = int(dv), int(kv), subjectID(subject)
		out[tokenizer.RefKey(m.Class, m.TokenDigest)] = m
		m = tokenizer.Mapping{}
		return nil
	})
	if err != nil {
		return nil, classify("look up tokens", err)
	}
	return out, nil
}

// DeleteTokens deletes the rows named by refs and returns the keys (RefKey) deleted.
func (s *Store) DeleteTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]bool, error) {
	classes := make([]string, len(refs))
	digests := make([][]byte, len(refs))
	for i, r := range refs {
		classes[i], digests[i] = r.Class, r.Digest
	}
	rows, err := s.pool.Query(ctx, `
		DELETE FROM tokens t USING unnest($1::text[], $2::bytea[]) AS q(class, digest)
		WHERE t.class = q.class AND t.token_digest = q.digest
		RETURNING t.class, t.token_digest`, classes, digests)
	if err != nil {
		return nil, classify("delete tokens", err)
	}
	out := map[string]bool{}
	var gone []tokenizer.Ref
	var class string
	var digest []byte
	_, err = pgx.ForEachRow(rows, []any{&class, &digest}, func() error {
		out[tokenizer.RefKey(class, digest)] = true
		gone = append(gone, tokenizer.Ref{Class: class, Digest: digest})
		return nil
	})
	if err != nil {
		return nil, classify("delete tokens", err)
	}
	s.publishDeleted(ctx, gone)
	return out, nil
}

// LookupFingerprints returns the live static rows among refs, keyed by tokenizer.FingerprintRef.Key.
func (s *Store) LookupFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (map[string]tokenizer.Mapping, error) {
	classes := make([]string, len(refs))
	scopes := make([]string, len(refs))
	fps := make([][]byte, len(refs))
	for i, r := range refs {
		classes[i], scopes[i], fps[i] = r.Class, r.Scope, r.Fingerprint
	}
	rows, err := s.pool.Query(ctx, `
		SELECT t.class, t.scope, t.fingerprint, t.token_digest, t.token_ct, t.key_version, t.expires_at, t.subject_id
		FROM tokens t
		JOIN unnest($1::text[], $2::text[], $3::bytea[]) AS q(class, scope, fp)
		  ON t.class = q.class AND t.scope = q.scope AND t.fingerprint = q.fp
		WHERE t.expires_at IS NULL OR t.expires_at > now()`, classes, scopes, fps)
	if err != nil {
		return nil, classify("look up fingerprints", err)
	}
	out := map[string]tokenizer.Mapping{}
	var m tokenizer.Mapping
	var kv int32
	var subject *int64
	_, err = pgx.ForEachRow(rows, []any{&m.Class, &m.Scope, &m.Fingerprint, &m.TokenDigest, &m.TokenCT, &kv, &m.ExpiresAt, &subject}, func() error {
		m.KeyVersion, m.Subject = int(kv), subjectID(subject)
		out[tokenizer.FingerprintRef{Class: m.Class, Scope: m.Scope, Fingerprint: m.Fingerprint}.Key()] = m
		m = tokenizer.Mapping{}
		return nil
	})
	if err != nil {
		return nil, classify("look up fingerprints", err)
	}
	return out, nil
}

// PurgeExpiredFingerprints deletes expired static rows among refs, so that a value
// whose token expired can be tokenized afresh. It returns how many rows went.
func (s *Store) PurgeExpiredFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (int64, error) {
	classes := make([]string, len(refs))
	scopes := make([]string, len(refs))
	fps := make([][]byte, len(refs))
	for i, r := range refs {
		classes[i], scopes[i], fps[i] = r.Class, r.Scope, r.Fingerprint
	}
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM tokens t USING unnest($1::text[], $2::text[], $3::bytea[]) AS q(class, scope, fp)
		WHERE t.class = q.class AND t.scope = q.scope AND t.fingerprint = q.fp AND t.expires_at <= now()`,
		classes, scopes, fps)
	if err != nil {
		return 0, classify("purge expired fingerprints", err)
	}
	return tag.RowsAffected(), nil
}

// Reencrypt moves up to limit rows whose value key version is below current to the
// current version, in one transaction; fn re-encrypts a row in place (ValueCT,
// TokenCT, KeyVersion). Rows locked by another re-encryptor are skipped. It returns
// how many rows moved.
func (s *Store) Reencrypt(ctx context.Context, current, limit int, fn func(m *tokenizer.Mapping) error) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, classify("begin re-encryption", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	rows, err := tx.Query(ctx, `
		SELECT class, token_digest, fingerprint, value_ct, token_ct, key_version
		FROM tokens WHERE key_version < $1 AND subject_id IS NULL
		ORDER BY class, token_digest LIMIT $2 FOR UPDATE SKIP LOCKED`, current, limit)
	if err != nil {
		return 0, classify("select rows to re-encrypt", err)
	}
	var ms []tokenizer.Mapping
	var m tokenizer.Mapping
	var kv int32
	_, err = pgx.ForEachRow(rows, []any{&m.Class, &m.TokenDigest, &m.Fingerprint, &m.ValueCT, &m.TokenCT, &kv}, func() error {
		m.KeyVersion = int(kv)
		ms = append(ms, m)
		m = tokenizer.Mapping{}
		return nil
	})
	if err != nil {
		return 0, classify("select rows to re-encrypt", err)
	}
	for i := range ms {
		if err := fn(&ms[i]); err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, `UPDATE tokens SET value_ct = $3, token_ct = $4, key_version = $5 WHERE class = $1 AND token_digest = $2`,
			ms[i].Class, ms[i].TokenDigest, ms[i].ValueCT, ms[i].TokenCT, ms[i].KeyVersion); err != nil {
			return 0, classify("re-encrypt row", err)
		}
	}
	if len(ms) > 0 {
		// Caches hold rows as stored: re-encrypted rows replace them everywhere.
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, 'flush')", invalidationChannel); err != nil {
			return 0, classify("publish cache flush", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, classify("commit re-encryption", err)
	}
	return len(ms), nil
}

// CountByKeyVersion returns how many rows each value key version encrypts.
func (s *Store) CountByKeyVersion(ctx context.Context) (map[int]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT key_version, count(*) FROM tokens WHERE subject_id IS NULL GROUP BY key_version`)
	if err != nil {
		return nil, classify("count rows by key version", err)
	}
	out := map[int]int64{}
	var v int32
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&v, &n}, func() error { out[int(v)] = n; return nil })
	return out, classify("count rows by key version", err)
}
