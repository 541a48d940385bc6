package memory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/phivault/tokenizer/internal/audit"
)

// AppendAudit implements audit.Appender: build sees the head and its rows are appended
// at once, under the store's lock (the advisory lock of the PostgreSQL store).
func (s *Store) AppendAudit(ctx context.Context, build func(headSeq int64, headHash []byte) ([]audit.Row, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq, hash := s.head()
	rows, err := build(seq, hash)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, r := range rows {
		// The constraints of the PostgreSQL table: consecutive seq, no empty hash.
		if r.Seq != seq+int64(i)+1 || len(r.PrevHash) == 0 || len(r.Hash) == 0 || r.Body == "" {
			return fmt.Errorf("memory store: audit row %d breaks the table's constraints", r.Seq)
		}
	}
	s.events = append(s.events, rows...)
	return nil
}

func (s *Store) head() (int64, []byte) {
	if len(s.events) == 0 {
		return 0, nil
	}
	last := s.events[len(s.events)-1]
	return last.Seq, last.Hash
}

// AuditHead implements audit.CheckpointStore.
func (s *Store) AuditHead(ctx context.Context) (int64, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq, hash := s.head()
	return seq, hash, ctx.Err()
}

// ReadAudit implements audit.ChainReader.
func (s *Store) ReadAudit(ctx context.Context, from, to int64, fn func(audit.Row) error) error {
	s.mu.Lock()
	rows := slices.Clone(s.events)
	s.mu.Unlock()
	if to <= 0 {
		to = 1<<63 - 1
	}
	for _, r := range rows {
		if r.Seq < from || r.Seq > to {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// InsertCheckpoint implements audit.CheckpointStore.
func (s *Store) InsertCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.checkpoints {
		if o.Seq == c.Seq && o.Signature == c.Signature {
			return ctx.Err()
		}
	}
	s.checkpoints = append(s.checkpoints, c)
	return ctx.Err()
}

// Checkpoints implements audit.ChainReader.
func (s *Store) Checkpoints(ctx context.Context, from, to int64) ([]audit.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if to <= 0 {
		to = 1<<63 - 1
	}
	var out []audit.Checkpoint
	for _, c := range s.checkpoints {
		if c.Seq >= from && c.Seq <= to {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b audit.Checkpoint) int {
		if a.Seq != b.Seq {
			return int(a.Seq - b.Seq)
		}
		return a.Time.Compare(b.Time)
	})
	return out, ctx.Err()
}

// LastCheckpointSeq implements audit.CheckpointStore.
func (s *Store) LastCheckpointSeq(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last int64
	for _, c := range s.checkpoints {
		last = max(last, c.Seq)
	}
	return last, ctx.Err()
}

// Disclosures implements audit.ChainStore.
func (s *Store) Disclosures(ctx context.Context, digests [][]byte, start, end time.Time) ([]audit.Row, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]bool{}
	for _, d := range digests {
		want[string(d)] = true
	}
	var out []audit.Row
	for _, r := range s.events {
		if r.Time.Before(start) || (!end.IsZero() && !r.Time.Before(end)) {
			continue
		}
		if slices.ContainsFunc(r.TokenDigests, func(d []byte) bool { return want[string(d)] }) {
			out = append(out, r)
		}
	}
	return out, ctx.Err()
}
