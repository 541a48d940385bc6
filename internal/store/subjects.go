package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

var _ tokenizer.SubjectStore = (*Store)(nil)

// subjectID is the subject of a row read with a nullable subject_id (0: none).
func subjectID(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

const subjectColumns = `id, digest, digest_version, audit_digest, key_ref, created_at`

func scanSubjects(rows pgx.Rows, fn func(tokenizer.Subject)) error {
	var s tokenizer.Subject
	var dv int32
	_, err := pgx.ForEachRow(rows, []any{&s.ID, &s.Digest, &dv, &s.AuditDigest, &s.KeyRef, &s.CreatedAt}, func() error {
		s.DigestVersion = int(dv)
		fn(s)
		s = tokenizer.Subject{}
		return nil
	})
	return err
}

// SubjectsByDigest returns the subjects among digests, keyed by string(digest).
func (s *Store) SubjectsByDigest(ctx context.Context, digests [][]byte) (map[string]tokenizer.Subject, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+subjectColumns+` FROM subjects WHERE digest = ANY($1::bytea[])`, digests)
	if err != nil {
		return nil, classify("look up subjects", err)
	}
	out := map[string]tokenizer.Subject{}
	err = scanSubjects(rows, func(sub tokenizer.Subject) { out[string(sub.Digest)] = sub })
	return out, classify("look up subjects", err)
}

// SubjectsByID returns the subjects among ids.
func (s *Store) SubjectsByID(ctx context.Context, ids []int64) (map[int64]tokenizer.Subject, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+subjectColumns+` FROM subjects WHERE id = ANY($1::int8[])`, ids)
	if err != nil {
		return nil, classify("look up subjects", err)
	}
	out := map[int64]tokenizer.Subject{}
	err = scanSubjects(rows, func(sub tokenizer.Subject) { out[sub.ID] = sub })
	return out, classify("look up subjects", err)
}

// InsertSubject inserts sub unless its digest exists, and returns the stored subject
// and whether sub went in.
func (s *Store) InsertSubject(ctx context.Context, sub tokenizer.Subject) (tokenizer.Subject, bool, error) {
	rows, err := s.pool.Query(ctx, `
		WITH ins AS (
			INSERT INTO subjects (digest, digest_version, audit_digest, key_ref)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (digest) DO NOTHING
			RETURNING `+subjectColumns+`
		)
		SELECT true, * FROM ins
		UNION ALL
		SELECT false, `+subjectColumns+` FROM subjects WHERE digest = $1 AND NOT EXISTS (SELECT 1 FROM ins)`,
		sub.Digest, int32(sub.DigestVersion), sub.AuditDigest, sub.KeyRef)
	if err != nil {
		return tokenizer.Subject{}, false, classify("insert subject", err)
	}
	var out tokenizer.Subject
	var inserted, found bool
	var dv int32
	_, err = pgx.ForEachRow(rows, []any{&inserted, &out.ID, &out.Digest, &dv, &out.AuditDigest, &out.KeyRef, &out.CreatedAt}, func() error {
		found = true
		out.DigestVersion = int(dv)
		return nil
	})
	if err != nil {
		return tokenizer.Subject{}, false, classify("insert subject", err)
	}
	if !found {
		// The conflicting row was deleted (an erasure) between the two reads: retry.
		return tokenizer.Subject{}, false, fmt.Errorf("insert subject: the subject was erased meanwhile: %w", errs.ErrConflict)
	}
	return out, inserted, nil
}

// ForgetSubject deletes subject id and its mappings in one transaction: the subject
// row is locked first, so that no mapping of it can be inserted meanwhile (an insert
// needs a key-share lock on the row it references), and the counts are exact.
func (s *Store) ForgetSubject(ctx context.Context, id int64) (map[string]int64, error) {
	counts := map[string]int64{}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var locked int64
		err := tx.QueryRow(ctx, `SELECT id FROM subjects WHERE id = $1 FOR UPDATE`, id).Scan(&locked)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			WITH d AS (DELETE FROM tokens WHERE subject_id = $1 RETURNING class)
			SELECT class, count(*) FROM d GROUP BY class`, id)
		if err != nil {
			return err
		}
		var class string
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&class, &n}, func() error { counts[class] = n; return nil }); err != nil {
			return err
		}
		// Every replica's mapping cache forgets the erased rows when this commits.
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, 'flush')", invalidationChannel); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM subjects WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return nil, classify("forget subject", err)
	}
	return counts, nil
}
