package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/phivault/tokenizer/internal/tokenizer"
)

var _ tokenizer.OffsetStore = (*Store)(nil)

// LoadOffsets implements tokenizer.OffsetStore.
func (s *Store) LoadOffsets(ctx context.Context, digests [][]byte) (map[string]tokenizer.Offset, error) {
	rows, err := s.pool.Query(ctx, `SELECT subject_digest, offset_ct, key_version, coalesce(subject_id, 0) FROM subject_offsets
		WHERE subject_digest = ANY($1::bytea[])`, digests)
	if err != nil {
		return nil, classify("load date shifts", err)
	}
	out := map[string]tokenizer.Offset{}
	var o tokenizer.Offset
	var kv int32
	_, err = pgx.ForEachRow(rows, []any{&o.SubjectDigest, &o.CT, &kv, &o.SubjectID}, func() error {
		o.KeyVersion = int(kv)
		out[string(o.SubjectDigest)] = o
		o = tokenizer.Offset{}
		return nil
	})
	if err != nil {
		return nil, classify("load date shifts", err)
	}
	return out, nil
}

// InsertOffsets implements tokenizer.OffsetStore: an existing row wins.
func (s *Store) InsertOffsets(ctx context.Context, rows []tokenizer.Offset) error {
	digests := make([][]byte, len(rows))
	cts := make([][]byte, len(rows))
	kvs := make([]int32, len(rows))
	subjects := make([]*int64, len(rows))
	for i, r := range rows {
		digests[i], cts[i], kvs[i] = r.SubjectDigest, r.CT, int32(r.KeyVersion)
		if r.SubjectID != 0 {
			subjects[i] = &rows[i].SubjectID
		}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO subject_offsets (subject_digest, offset_ct, key_version, subject_id)
		SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::int4[], $4::int8[]) ON CONFLICT DO NOTHING`, digests, cts, kvs, subjects)
	return classify("insert date shifts", err)
}
