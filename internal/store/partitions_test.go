package store_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/store/memory"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// edSigner signs checkpoints with a fresh ed25519 key.
type edSigner struct{ priv ed25519.PrivateKey }

func newSigner() edSigner {
	_, priv, _ := ed25519.GenerateKey(nil)
	return edSigner{priv}
}

func (s edSigner) Sign(_ context.Context, m []byte) (string, error) {
	return "test:v1:" + base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, m)), nil
}

func (s edSigner) Verify(_ context.Context, m []byte, sig string) (bool, error) {
	return audit.VerifyEd25519(s.priv.Public().(ed25519.PublicKey), m, sig), nil
}

func openMigrated(t *testing.T, upTo int) (*store.Store, string) {
	t.Helper()
	db := pgtest.NewDatabase(t)
	st, err := store.Open(t.Context(), db, store.Options{MaxConns: 8})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.MigrateTo(t.Context(), upTo)
	require.NoError(t, err)
	return st, db
}

// appendAt appends one event per time, in order, and returns their seqs.
func appendAt(t *testing.T, st audit.Appender, times ...time.Time) []int64 {
	t.Helper()
	w := audit.NewWriter(st, quiet, 10*time.Second)
	defer w.Close()
	seqs := make([]int64, len(times))
	for i, at := range times {
		ev := &audit.Event{Time: at, RequestID: fmt.Sprintf("req-%d", i), Caller: "svc-a", Operation: "detokenize",
			Classes: []string{"mrn"}, Items: 1, Outcome: "OK", TokenDigests: [][]byte{{byte(i), 7, 7}}}
		require.NoError(t, w.Append(t.Context(), ev))
		seqs[i] = ev.Seq
	}
	return seqs
}

func verifyAll(t *testing.T, st audit.ChainReader, events int64) {
	t.Helper()
	res, err := audit.Verify(t.Context(), st, newSigner(), nil, 0, 0, nil)
	require.NoError(t, err)
	require.True(t, res.OK, res.Reason)
	assert.Equal(t, events, res.EventsChecked)
	assert.Zero(t, res.AnchorSeq)
}

// partitionOf returns the attached partition named name.
func partitionOf(t *testing.T, st *store.Store, name string) store.AuditPartition {
	t.Helper()
	parts, err := st.AuditPartitions(t.Context())
	require.NoError(t, err)
	for _, p := range parts {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no attached partition %s in %v", name, parts)
	return store.AuditPartition{}
}

func TestAuditAcrossMonthBoundary(t *testing.T) {
	t.Parallel()
	st, db := openMigrated(t, 0)
	feb := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	appendAt(t, st,
		feb.Add(-2*time.Second), feb.Add(-time.Second), // January
		feb.Add(time.Second),
		feb.Add(-500*time.Millisecond), // stamped in January by a lagging replica, stored after a February event
		feb.Add(2*time.Second))
	verifyAll(t, st, 5)

	jan := partitionOf(t, st, "audit_events_y2025m01")
	assert.Equal(t, [2]int64{1, 2}, [2]int64{jan.FirstSeq, jan.LastSeq})
	assert.True(t, jan.From.Equal(feb.AddDate(0, -1, 0)) && jan.To.Equal(feb), "bounds %v", jan)
	febPart := partitionOf(t, st, "audit_events_y2025m02")
	assert.Equal(t, [2]int64{3, 5}, [2]int64{febPart.FirstSeq, febPart.LastSeq}, "each month is one run of seqs")
	assert.Equal(t, int64(1), pgtest.Count(t, db, `SELECT count(*) FROM audit_events_y2025m02
		WHERE seq = 4 AND time < '2025-02-01' AND partition_month = '2025-02-01'`), "the lagging event follows the chain's month")
	now := time.Now().UTC()
	next := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	partitionOf(t, st, fmt.Sprintf("audit_events_y%04dm%02d", next.Year(), next.Month())) // created ahead
	// Digest-laden columns are stored uncompressed in every partition, including those
	// the writer created (migration 0009): compressing random digests never succeeds.
	assert.Zero(t, pgtest.Count(t, db, `SELECT count(*) FROM pg_attribute a JOIN pg_inherits i ON i.inhrelid = a.attrelid
		WHERE i.inhparent = 'audit_events'::regclass AND a.attname IN ('body', 'token_digests') AND a.attstorage <> 'e'`))
	assert.Equal(t, int64(2*4), pgtest.Count(t, db, `SELECT count(*) FROM pg_attribute a JOIN pg_inherits i ON i.inhrelid = a.attrelid
		WHERE i.inhparent = 'audit_events'::regclass AND a.attname IN ('body', 'token_digests')`), "four partitions (January, February, this month and the next), two columns")

	for _, sql := range []string{
		"UPDATE audit_events_y2025m01 SET caller = 'x'", "DELETE FROM audit_events_y2025m01",
		"TRUNCATE audit_events_y2025m01", "UPDATE audit_events SET caller = 'x' WHERE seq = 3",
		"UPDATE audit_events SET partition_month = '2025-01-01' WHERE seq = 4", "DELETE FROM audit_events",
		"TRUNCATE audit_events",
	} {
		assertRefused(t, db, "", sql, "audit tables are append-only")
	}
	verifyAll(t, st, 5)
}

// TestServiceRoleCreatesPartitions: the service role owns no table, yet creates a
// month's partition through the function; concurrent creators make one partition.
func TestServiceRoleCreatesPartitions(t *testing.T) {
	t.Parallel()
	st, db := openMigrated(t, 0)
	var wg sync.WaitGroup
	names := make([]string, 4)
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(context.Background(), db)
			if !assert.NoError(t, err) {
				return
			}
			defer conn.Close(context.Background())
			_, err = conn.Exec(context.Background(), "SET ROLE tokenizer_service")
			assert.NoError(t, err)
			assert.NoError(t, conn.QueryRow(context.Background(), "SELECT audit_events_ensure_partition('2025-06-15')").Scan(&names[i]))
		}()
	}
	wg.Wait()
	for _, n := range names {
		assert.Equal(t, "audit_events_y2025m06", n)
	}
	partitionOf(t, st, "audit_events_y2025m06")
	assertRefused(t, db, "tokenizer_service", "CREATE TABLE audit_events_y2025m07 PARTITION OF audit_events FOR VALUES FROM ('2025-07-01') TO ('2025-08-01')", "42501")
	assertRefused(t, db, "tokenizer_service", "UPDATE audit_events SET caller = 'x'", "permission denied")
	assertRefused(t, db, "tokenizer_service", "SELECT audit_events_ensure_partition((now() + interval '2 years')::date)", "more than a year ahead")
	// The service's own path, as the service role: appends into a new month's partition,
	// listing and ensuring partitions.
	svcURL := db + "&role=tokenizer_service"
	assertRefused(t, svcURL, "", "DELETE FROM audit_events", "permission denied") // the URL sets the role
	svc, err := store.Open(t.Context(), svcURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	defer svc.Close()
	appendAt(t, svc, time.Date(2025, 6, 20, 0, 0, 0, 0, time.UTC), time.Date(2025, 8, 2, 0, 0, 0, 0, time.UTC))
	_, err = svc.EnsureAuditPartitions(t.Context(), 1)
	require.NoError(t, err)
	aug := partitionOf(t, svc, "audit_events_y2025m08")
	assert.Equal(t, [2]int64{2, 2}, [2]int64{aug.FirstSeq, aug.LastSeq})
	n, err := svc.AuditPartitionEvents(t.Context(), aug)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.Equal(t, int64(1), pgtest.Count(t, db, "SELECT count(*) FROM audit_events_y2025m06"))
	assert.Equal(t, int64(2), pgtest.Count(t, db, `SELECT count(*) FROM pg_trigger
		WHERE tgrelid = 'audit_events_y2025m06'::regclass AND tgname LIKE 'audit_events_y2025m06_%'`), "its own triggers")
}

// TestMigrationKeepsExistingChain migrates a chain written before 0008: the rows stay
// where they are as the legacy partition and the chain goes on across it.
func TestMigrationKeepsExistingChain(t *testing.T) {
	t.Parallel()
	st, db := openMigrated(t, 7)
	mem := memory.New()
	start := time.Now().UTC().AddDate(0, -3, 0)
	var times []time.Time
	for i := range 40 {
		times = append(times, start.Add(time.Duration(i)*36*time.Hour)) // two months
	}
	appendAt(t, mem, times...)
	copyOld(t, st, db, mem, 1)

	applied, err := st.Migrate(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []int{8, 9}, applied)
	verifyAll(t, st, 40)
	legacy := partitionOf(t, st, "audit_events_legacy")
	assert.True(t, legacy.From.IsZero(), "unbounded below")
	assert.Equal(t, [2]int64{1, 40}, [2]int64{legacy.FirstSeq, legacy.LastSeq})

	// A replica of the release before 0008 appends during the rolling upgrade, without
	// partition_month: the database's month is the default.
	appendAt(t, mem, time.Now().UTC())
	copyOld(t, st, db, mem, 41)
	appendAt(t, st, time.Now().UTC(), times[3]) // now, and an old time (stored in this month all the same)
	verifyAll(t, st, 43)
	now := time.Now().UTC()
	assert.Equal(t, int64(3), pgtest.Count(t, db, "SELECT count(*) FROM audit_events WHERE seq > 40 AND partition_month = $1",
		time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)))
	ds, err := st.Disclosures(t.Context(), [][]byte{{5, 7, 7}}, time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, ds, 1, "the GIN index and the parent still find legacy rows")
	assert.Equal(t, int64(6), ds[0].Seq)
	assert.Equal(t, int64(1), pgtest.Count(t, db, `SELECT count(*) FROM pg_indexes
		WHERE tablename = 'audit_events_legacy' AND indexdef LIKE '%gin (token_digests)%'`))
	assert.Equal(t, int64(1), pgtest.Count(t, db, `SELECT count(*) FROM audit_events WHERE seq = 3`))
	for _, sql := range []string{"DELETE FROM audit_events_legacy WHERE seq = 3", "TRUNCATE audit_events_legacy",
		"UPDATE audit_events SET body = body WHERE seq = 3"} {
		assertRefused(t, db, "", sql, "audit tables are append-only")
	}
	assertRefused(t, db, "tokenizer_service", "DELETE FROM audit_events WHERE seq = 3", "permission denied")

	// After an event dated next month, an old replica's row follows the head's month, not
	// the database's (the column never decreases along the chain).
	next := time.Date(now.Year(), now.Month()+1, 1, 1, 0, 0, 0, time.UTC)
	appendAt(t, st, next)
	verifyAll(t, st, 44)
	pgtest.Exec(t, db, `INSERT INTO audit_events (seq, prev_hash, hash, body, time, operation, caller)
		VALUES (45, '\x00', '\x00', '{}', now(), 'detokenize', 'old-replica')`)
	assert.Equal(t, int64(1), pgtest.Count(t, db, "SELECT count(*) FROM audit_events WHERE seq = 45 AND partition_month = $1",
		time.Date(next.Year(), next.Month(), 1, 0, 0, 0, 0, time.UTC)))
	assert.Equal(t, int64(1), pgtest.Count(t, db,
		"SELECT count(*) FROM (SELECT 1 WHERE has_table_privilege('tokenizer_service', 'audit_events', 'SELECT, INSERT')) x"))
}

// copyOld inserts mem's rows from seq from on into the audit table, with the columns
// of before 0008, as the old store did.
func copyOld(t *testing.T, st *store.Store, db string, mem *memory.Store, from int64) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var src [][]any
	require.NoError(t, mem.ReadAudit(t.Context(), from, 0, func(r audit.Row) error {
		src = append(src, []any{r.Seq, r.PrevHash, r.Hash, r.Body, r.Time, r.Operation, r.Caller, r.TokenDigests})
		return nil
	}))
	_, err = conn.CopyFrom(t.Context(), pgx.Identifier{"audit_events"},
		[]string{"seq", "prev_hash", "hash", "body", "time", "operation", "caller", "token_digests"}, pgx.CopyFromRows(src))
	require.NoError(t, err)
	verifyAll(t, st, from-1+int64(len(src)))
}

// assertRefused runs sql (as role, when not empty) and expects an error containing want.
func assertRefused(t *testing.T, db, role, sql, want string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	if role != "" {
		_, err = conn.Exec(t.Context(), "SET ROLE "+role)
		require.NoError(t, err)
	}
	_, err = conn.Exec(t.Context(), sql)
	require.Error(t, err, sql)
	assert.True(t, strings.Contains(err.Error(), want), "%s: %v", sql, err)
}

// TestReplicasAppendAcrossBoundary: two replicas (stores) append concurrently events
// stamped on both sides of a month's end, in no order; they create the new month's
// partition between them, the chain verifies, and each partition is one run of seqs.
func TestReplicasAppendAcrossBoundary(t *testing.T) {
	t.Parallel()
	first, db := openMigrated(t, 0)
	second, err := store.Open(t.Context(), db, store.Options{MaxConns: 4})
	require.NoError(t, err)
	defer second.Close()
	apr := time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for r, st := range []*store.Store{first, second, first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := audit.NewWriter(st, quiet, 10*time.Second)
			defer w.Close()
			for i := range 20 {
				at := apr.Add(time.Duration((i*7+r*3)%21-10) * time.Second) // -10 s .. +10 s
				ev := &audit.Event{Time: at, RequestID: fmt.Sprintf("r%d-%d", r, i), Caller: "svc", Operation: "tokenize", Outcome: "OK"}
				assert.NoError(t, w.Append(t.Context(), ev))
			}
		}()
	}
	wg.Wait()
	verifyAll(t, first, 80)
	assert.Zero(t, pgtest.Count(t, db, `SELECT count(*) FROM (SELECT partition_month < lag(partition_month) OVER (ORDER BY seq) AS down
		FROM audit_events) x WHERE down`), "partition_month never decreases along the chain")
	for _, name := range []string{"audit_events_y2024m03", "audit_events_y2024m04"} {
		p := partitionOf(t, first, name)
		n, err := first.AuditPartitionEvents(t.Context(), p)
		require.NoError(t, err)
		assert.Equal(t, p.LastSeq-p.FirstSeq+1, n, "%s is one run of seqs", name)
	}
}
