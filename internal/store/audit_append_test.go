package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/store"
)

// Appends of every size chain on: small batches go in one INSERT pipelined with the
// COMMIT, large ones are copied; a failed build leaves nothing behind (its transaction
// and the chain lock end) and the next append continues the chain.
func TestAppendAuditBatchSizes(t *testing.T) {
	st, db := openMigrated(t, store.LatestVersion())
	total := int64(0)
	for _, n := range []int{1, 2, 31, 32, 33, 200, 1} {
		require.NoError(t, st.AppendAudit(t.Context(), func(seq int64, prev []byte) ([]audit.Row, error) {
			require.Equal(t, total, seq, "the head is the last append's")
			return detokenizeRows(seq, prev, n, func(body string, _ [][]byte) string { return body }), nil
		}))
		total += int64(n)
	}
	boom := errors.New("build failed")
	for range 12 { // more than the pool's connections: none is left in a transaction
		err := st.AppendAudit(t.Context(), func(int64, []byte) ([]audit.Row, error) { return nil, boom })
		require.ErrorIs(t, err, boom)
	}
	require.NoError(t, st.AppendAudit(t.Context(), func(seq int64, prev []byte) ([]audit.Row, error) {
		return detokenizeRows(seq, prev, 3, func(body string, _ [][]byte) string { return body }), nil
	}))
	total += 3
	conn, err := pgx.Connect(t.Context(), db)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n int64
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM audit_events").Scan(&n))
	assert.Equal(t, total, n)
	var idle int
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'").Scan(&idle))
	assert.Zero(t, idle, "no connection is left in a transaction")
	res, err := audit.Verify(t.Context(), st, newSigner(), nil, 0, 0, nil)
	require.NoError(t, err)
	require.True(t, res.OK, res.Reason)
	assert.Equal(t, total, res.EventsChecked)
}

// Two replicas append in turn to one chain: each assumes the head it appended last,
// which the other has since moved, so its assumption fails, nothing is written and it
// appends again on the real head; a replica appending twice in a row appends in one
// round trip. The chain verifies throughout.
func TestAppendAuditAssumedHead(t *testing.T) {
	a, db := openMigrated(t, store.LatestVersion())
	b, err := store.Open(t.Context(), db, store.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	total := int64(0)
	appendN := func(st *store.Store, n int) (offered []int64) {
		require.NoError(t, st.AppendAudit(t.Context(), func(seq int64, prev []byte) ([]audit.Row, error) {
			offered = append(offered, seq)
			return detokenizeRows(seq, prev, n, func(body string, _ [][]byte) string { return body }), nil
		}))
		total += int64(n)
		return offered
	}
	appendN(a, 1)
	appendN(a, 2) // this month's partitions are known now
	before, head := a.HeadAppends(), total
	assert.Equal(t, []int64{head}, appendN(a, 3), "a builds once, on the head it appended")
	assert.Equal(t, before+1, a.HeadAppends(), "in one round trip")

	appendN(b, 1)
	appendN(b, 1)
	seen := total
	offered := appendN(a, 2)
	assert.Equal(t, []int64{6, seen}, offered, "a assumed its own head (6), found b's appends, and built again on the real head")
	assert.Equal(t, before+1, a.HeadAppends(), "the failed assumption wrote nothing")
	head = total
	assert.Equal(t, []int64{head}, appendN(a, 1))
	assert.Equal(t, before+2, a.HeadAppends())
	head = total
	assert.Equal(t, []int64{head}, appendN(a, 40), "a batch too large for one round trip is built once: the head read back is the one assumed")
	assert.Equal(t, before+2, a.HeadAppends(), "it went the two-round-trip way")
	appendN(b, 1)
	head = total
	assert.Equal(t, []int64{head - 1, head}, appendN(a, 40), "built again when the head read back is another")

	// Concurrent appends from both.
	done := make(chan error, 2)
	for _, st := range []*store.Store{a, b} {
		go func() {
			var err error
			for range 40 {
				err = errors.Join(err, st.AppendAudit(context.Background(), func(seq int64, prev []byte) ([]audit.Row, error) {
					return detokenizeRows(seq, prev, 2, func(body string, _ [][]byte) string { return body }), nil
				}))
			}
			done <- err
		}()
	}
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	total += 2 * 40 * 2
	res, err := audit.Verify(t.Context(), a, newSigner(), nil, 0, 0, nil)
	require.NoError(t, err)
	require.True(t, res.OK, res.Reason)
	assert.Equal(t, total, res.EventsChecked)
}
