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
