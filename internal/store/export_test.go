package store

import "context"

// MigrateTo applies the migrations up to version upTo.
func (s *Store) MigrateTo(ctx context.Context, upTo int) ([]int, error) {
	return s.migrateTo(ctx, upTo)
}
