package memory

import (
	"bytes"
	"context"

	"github.com/phivault/tokenizer/internal/tokenizer"
)

var _ tokenizer.SubjectStore = (*Store)(nil)

// SubjectsByDigest implements tokenizer.SubjectStore.
func (s *Store) SubjectsByDigest(ctx context.Context, digests [][]byte) (map[string]tokenizer.Subject, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]tokenizer.Subject{}
	for _, sub := range s.subjects {
		for _, d := range digests {
			if bytes.Equal(sub.Digest, d) {
				out[string(d)] = sub
			}
		}
	}
	return out, ctx.Err()
}

// SubjectsByID implements tokenizer.SubjectStore.
func (s *Store) SubjectsByID(ctx context.Context, ids []int64) (map[int64]tokenizer.Subject, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int64]tokenizer.Subject{}
	for _, id := range ids {
		if sub, ok := s.subjects[id]; ok {
			out[id] = sub
		}
	}
	return out, ctx.Err()
}

// InsertSubject implements tokenizer.SubjectStore.
func (s *Store) InsertSubject(ctx context.Context, sub tokenizer.Subject) (tokenizer.Subject, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.subjects {
		if bytes.Equal(have.Digest, sub.Digest) {
			return have, false, ctx.Err()
		}
	}
	if s.subjects == nil {
		s.subjects = map[int64]tokenizer.Subject{}
	}
	s.lastSubject++
	sub.ID, sub.CreatedAt = s.lastSubject, s.now()
	s.subjects[sub.ID] = sub
	return sub, true, ctx.Err()
}

// ForgetSubject implements tokenizer.SubjectStore.
func (s *Store) ForgetSubject(ctx context.Context, id int64) (map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	counts := map[string]int64{}
	if _, ok := s.subjects[id]; !ok {
		return counts, ctx.Err()
	}
	for d, m := range s.tokens {
		if m.Subject == id {
			counts[m.Class]++
			s.remove(d)
		}
	}
	delete(s.subjects, id)
	for d, o := range s.offsets {
		if o.SubjectID == id {
			delete(s.offsets, d)
		}
	}
	for gid, g := range s.grants {
		if g.SubjectID == id {
			delete(s.grants, gid)
		}
	}
	return counts, ctx.Err()
}
