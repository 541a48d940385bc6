package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// monthsAgo is the first instant (UTC) of the month n months before now's.
func monthsAgo(n int) time.Time {
	now := time.Now().UTC()
	return time.Date(now.Year(), now.Month()-time.Month(n), 1, 0, 0, 0, 0, time.UTC)
}

func partitionName(m time.Time) string {
	return fmt.Sprintf("audit_events_y%04dm%02d", m.Year(), m.Month())
}

// seedTwoMonths appends events dated in the month before last and last month, through
// the service's writer (so they carry MACs), before anything else is appended: seqs
// 1-3 in the first month, 4-6 in the second, 5 dated in the first month (a replica
// whose clock lags) and stored in the second all the same.
func seedTwoMonths(t *testing.T, flags []string) {
	t.Helper()
	cfg, code := load("audit seed", flags, noEnv, os.Stderr, nil)
	require.NotNil(t, cfg, "load: %d", code)
	a, err := openRuntime(t.Context(), cfg, quietLogger())
	require.NoError(t, err)
	defer a.Close()
	second := monthsAgo(1)
	times := []time.Time{
		second.Add(-3 * time.Second), second.Add(-2 * time.Second), second.Add(-time.Second),
		second.Add(time.Second), second.Add(-500 * time.Millisecond), second.Add(2 * time.Second),
	}
	for i, at := range times {
		ev := &audit.Event{Time: at, RequestID: fmt.Sprintf("seed-%d", i), Caller: "svc-a", Operation: "detokenize",
			Classes: []string{"ssn"}, Items: 1, Outcome: "OK", TokenDigests: [][]byte{{byte(i), 1, 2, 3}}}
		require.NoError(t, a.Audit.Append(t.Context(), ev))
		require.Equal(t, int64(i+1), ev.Seq)
	}
}

func TestAuditArchiveDetachVerify(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	flags := devFlags(t, db)
	dir := t.TempDir()
	code, _, stderr := run(t, append([]string{"migrate"}, flags...)...)
	require.Equal(t, exitOK, code, stderr)
	seedTwoMonths(t, flags)
	first, second := monthsAgo(2), monthsAgo(1)
	firstFile, secondFile := filepath.Join(dir, "first.jsonl"), filepath.Join(dir, "second.jsonl")

	code, stdout, stderr := run(t, append([]string{"audit", "partitions", "--ensure"}, flags...)...)
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stdout, partitionName(first)+"\tfrom "+first.Format(time.DateOnly)+"\tto "+second.Format(time.DateOnly)+"\tseq 1..3")
	assert.Contains(t, stdout, partitionName(second)+"\tfrom "+second.Format(time.DateOnly)+"\tto "+monthsAgo(0).Format(time.DateOnly)+"\tseq 4..6")
	assert.Contains(t, stdout, partitionName(monthsAgo(-1)), "next month's partition exists ahead")

	steps := []struct {
		name, want string
		args       []string
		code       int
	}{
		{"this month has not ended", "has not ended yet", []string{"audit", "archive", "--month", monthsAgo(0).Format("2006-01"), "--out", filepath.Join(dir, "now")}, exitFailure},
		{"archive the first month", "archived " + partitionName(first) + ": events 1..3 (3)", []string{"audit", "archive", "--month", first.Format("2006-01"), "--out", firstFile}, exitOK},
		{"an archive is never overwritten", "exists", []string{"audit", "archive", "--month", first.Format("2006-01"), "--out", firstFile}, exitFailure},
		{"archive the second month", "events 4..6 (3)", []string{"audit", "archive", "--month", second.Format("2006-01"), "--out", secondFile}, exitOK},
	}
	for _, s := range steps {
		code, stdout, stderr := run(t, append(s.args, flags...)...)
		assert.Equal(t, s.code, code, "%s: %s", s.name, stderr)
		assert.Contains(t, stdout+stderr, s.want, s.name)
	}

	code, stdout, stderr = run(t, "audit", "verify-archive", firstFile)
	assert.Equal(t, exitOK, code, stdout+stderr)
	assert.Contains(t, stdout, "OK: "+partitionName(first)+", events 1..3 (3)")
	code, stdout, stderr = run(t, "audit", "verify-archive", "--prev", firstFile, secondFile)
	assert.Equal(t, exitOK, code, stdout+stderr)
	assert.Contains(t, stdout, "events 4..6 (3)")

	// The DBA detaches both; the service goes on appending and verifying from the boundary.
	pgtest.Exec(t, db, "ALTER TABLE audit_events DETACH PARTITION "+partitionName(first))
	pgtest.Exec(t, db, "ALTER TABLE audit_events DETACH PARTITION "+partitionName(second))
	code, stdout, stderr = run(t, append([]string{"audit", "export"}, flags...)...)
	require.Equal(t, exitOK, code, stderr)
	assert.NotContains(t, stdout, `"seq":6,`, "the detached events are gone from the database")
	code, stdout, stderr = run(t, append([]string{"audit", "verify"}, flags...)...)
	assert.Equal(t, exitOK, code, stdout+stderr)
	assert.Contains(t, stdout, "events 1..6 are archived (not in the database): verified from seq 7")

	// A detached partition keeps its own append-only triggers.
	assertRefused(t, db, "DELETE FROM "+partitionName(first))
	assertRefused(t, db, "UPDATE "+partitionName(second)+" SET caller = 'x'")
	assertRefused(t, db, "TRUNCATE "+partitionName(second))
}

func TestVerifyArchiveFindsTampering(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	flags := devFlags(t, db)
	dir := t.TempDir()
	code, _, stderr := run(t, append([]string{"migrate"}, flags...)...)
	require.Equal(t, exitOK, code, stderr)
	seedTwoMonths(t, flags)
	name := filepath.Join(dir, "second.jsonl")
	code, _, stderr = run(t, append([]string{"audit", "archive", "--month", monthsAgo(1).Format("2006-01"), "--out", name}, flags...)...)
	require.Equal(t, exitOK, code, stderr)
	raw, err := os.ReadFile(name)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(raw), "\n")
	require.Len(t, lines, 1+2+3+1, "header, checkpoints at 3 and 6, three events, the final empty split")
	cases := []struct{ name, content, want string }{
		{"intact", string(raw), "OK: "},
		{"event modified", strings.Replace(string(raw), `"request_id":"seed-4"`, `"request_id":"seed-9"`, 1), "event 5: hash does not match"},
		{"event removed", lines[0] + lines[1] + lines[2] + lines[3] + lines[5], "event 5 is missing"},
		{"last checkpoint removed", lines[0] + lines[1] + lines[3] + lines[4] + lines[5], "no signed checkpoint at the last seq 6"},
		{"start checkpoint removed", lines[0] + lines[2] + lines[3] + lines[4] + lines[5], "no signed checkpoint at seq 3 anchors the start"},
		{"tail cut", lines[0] + lines[1] + lines[2] + lines[3] + lines[4], "the events end at seq 5"},
		{"checkpoint forged", strings.Replace(string(raw), `"seq":6,"hash":"`, `"seq":6,"hash":"00`, 1), "signature does not verify"},
	}
	for _, tc := range cases {
		f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		require.NoError(t, os.WriteFile(f, []byte(tc.content), 0o600))
		code, stdout, stderr := run(t, "audit", "verify-archive", f)
		if tc.want == "OK: " {
			assert.Equal(t, exitOK, code, "%s: %s%s", tc.name, stdout, stderr)
		} else {
			assert.Equal(t, exitFailure, code, "%s: %s", tc.name, stdout)
		}
		assert.Contains(t, stdout, tc.want, tc.name)
	}
	other := strings.Repeat("ab", 32)
	code, stdout, _ := run(t, "audit", "verify-archive", "--public-key", other, name)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stdout, "signature does not verify under the public key")

	// A partition that is not one run of seqs cannot be archived (detaching it would cut
	// the chain).
	pgtest.Exec(t, db, `INSERT INTO audit_events (seq, prev_hash, hash, body, time, operation, caller, partition_month)
		VALUES (100, '\x00', '\x00', '{}', now(), 'detokenize', 'stray', $1)`, monthsAgo(2))
	code, _, stderr = run(t, append([]string{"audit", "archive", "--month", monthsAgo(2).Format("2006-01"),
		"--out", filepath.Join(dir, "first.jsonl")}, flags...)...)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stderr, "holds 4 events, not every seq of 1..100: it cannot be archived and detached alone")
}

// assertRefused runs sql as the test's superuser and expects the append-only trigger.
func assertRefused(t *testing.T, db, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	_, err = conn.Exec(t.Context(), sql)
	require.Error(t, err, sql)
	assert.Contains(t, err.Error(), "audit tables are append-only", sql)
}
