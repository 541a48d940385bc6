package store

import "context"

// MigrateTo applies the migrations up to version upTo.
func (s *Store) MigrateTo(ctx context.Context, upTo int) ([]int, error) {
	return s.migrateTo(ctx, upTo)
}

// HeadAppends is how many appends went in one round trip on the assumed head.
func (s *Store) HeadAppends() int64 { return s.headAppends.Load() }
