package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// serviceLogin migrates e's database as the owner and returns the URL of a new login
// role that is a member of tokenizer_service (what production runs as).
func serviceLogin(t *testing.T, e *env, name string) string {
	t.Helper()
	st, err := store.Open(t.Context(), e.dbURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	_, err = st.Migrate(t.Context())
	require.NoError(t, err)
	st.Close()
	login := fmt.Sprintf("tokenizer_%s_%d", name, time.Now().UnixNano())
	pgtest.Exec(t, e.dbURL, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE tokenizer_service", login))
	t.Cleanup(func() { pgtest.Exec(t, pgtest.ServerURL(), "DROP ROLE IF EXISTS "+login) })
	return strings.Replace(e.dbURL, "postgres://postgres@", "postgres://"+login+"@", 1)
}

// Issue 10, finding 4: a second login in the service's role appends a well-chained
// event; the service then chains onto it and checkpoints it. Verification fails at
// the forged event: its MAC needs the audit key, which the database does not hold.
func TestServiceRoleCannotForgeAuditEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	serviceURL := serviceLogin(t, e, "svc")
	forgerURL := serviceLogin(t, e, "forger")
	e.dbURL = serviceURL
	r := e.start(t, true)
	traffic(t, r, 2) // events 1-4

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, forgerURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var seq int64
	var head, mac []byte
	var macVersion int
	require.NoError(t, conn.QueryRow(ctx, "SELECT seq, hash, mac, mac_version FROM audit_events ORDER BY seq DESC LIMIT 1").Scan(&seq, &head, &mac, &macVersion))
	ev := &audit.Event{Seq: seq + 1, Time: time.Now().UTC().Truncate(time.Microsecond), RequestID: "forged", Caller: "spiffe://hospital.example/ehr",
		Operation: "detokenize", Classes: []string{"ssn"}, Items: 1, Outcome: "OK", PurposeOfUse: "TREAT"}
	body := ev.Canonical()
	h := audit.Hash(head, body)
	// The forger even copies a MAC the service wrote, and its version.
	_, err = conn.Exec(ctx, `INSERT INTO audit_events (seq, prev_hash, hash, body, time, operation, caller, mac, mac_version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, ev.Seq, head, h, string(body), ev.Time, ev.Operation, ev.Caller, mac, macVersion)
	require.NoError(t, err, "the service role may append: that is why events carry a MAC")

	traffic(t, r, 1) // the service chains onto the forged event
	checkpointNow(t, e)
	res, err := r.audit().VerifyAudit(t.Context(), &tokenizerv1.VerifyAuditRequest{})
	require.NoError(t, err)
	assert.False(t, res.Ok)
	assert.Equal(t, seq+1, res.FirstBadSeq)
	assert.Contains(t, res.Reason, "MAC does not verify")
	direct := verify(t, e, nil)
	assert.False(t, direct.OK)
	assert.Equal(t, seq+1, direct.FirstBadSeq)
}

// Issue 10, finding 4: VerifyAudit holds the log to the configured checkpoint sink by
// default, so a log wiped in the database (superuser, triggers off) fails instead of
// verifying as "OK: 0 events".
func TestVerifyUsesTheConfiguredSink(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sink := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	e.mutate = func(c *config.Config) {
		c.Audit.CheckpointSink, c.Audit.CheckpointEvery, c.Audit.CheckpointInterval = sink, 4, time.Hour
	}
	r := e.start(t, true)
	traffic(t, r, 3)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(sink)
		return bytes.Count(b, []byte("\n")) >= 1
	}, 10*time.Second, 50*time.Millisecond, "a checkpoint reaches the sink")
	res, err := r.audit().VerifyAudit(t.Context(), &tokenizerv1.VerifyAuditRequest{})
	require.NoError(t, err)
	require.True(t, res.Ok, res.Reason)
	require.Positive(t, res.CheckpointsChecked)

	superuser(t, e.dbURL, `DELETE FROM audit_events`, `DELETE FROM audit_checkpoints`)
	res, err = r.audit().VerifyAudit(t.Context(), &tokenizerv1.VerifyAuditRequest{})
	require.NoError(t, err)
	assert.False(t, res.Ok, "a wiped log does not verify")
	assert.Contains(t, res.Reason, "truncated")
}

// Issue 10, finding 4: the columns queries read (token_digests for ListDisclosures,
// time, operation, caller) are checked against the hashed body.
func TestQueryColumnsAreVerified(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, sql, want string }{
		{"token digests cleared", `UPDATE audit_events SET token_digests = '{}' WHERE operation = 'detokenize'`, "token_digests column"},
		{"time moved", `UPDATE audit_events SET time = time - interval '1 day' WHERE seq = 1`, "time column"},
		{"caller changed", `UPDATE audit_events SET caller = 'someone-else' WHERE seq = 1`, "caller column"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			r := e.start(t, true)
			traffic(t, r, 1)
			superuser(t, e.dbURL, tc.sql)
			res, err := r.audit().VerifyAudit(t.Context(), &tokenizerv1.VerifyAuditRequest{})
			require.NoError(t, err)
			assert.False(t, res.Ok)
			assert.Contains(t, res.Reason, tc.want)
		})
	}
}

// Issue 10, finding 4: x-forwarded-for sent by a direct gRPC client is not believed;
// through the REST gateway the address the gateway saw is recorded, not the claim.
func TestForwardedForIsNotTrustedFromClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "x-forwarded-for", "6.6.6.6")
	_, err := r.tokenizer().Tokenize(ctx, tokenizeOne("ssn", "123-45-6789"))
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, "http://"+r.addrs.HTTP+"/v1/tokenize", strings.NewReader(`{"items":[{"class":"ssn","value":"123-45-6789"}]}`))
	require.NoError(t, err)
	req.Header.Set("X-Forwarded-For", "7.7.7.7")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	stream, err := r.audit().ExportAudit(t.Context(), &tokenizerv1.ExportAuditRequest{Format: tokenizerv1.ExportFormat_EXPORT_FORMAT_JSONL})
	require.NoError(t, err)
	var b strings.Builder
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		b.Write(chunk.Data)
	}
	assert.NotContains(t, b.String(), "6.6.6.6")
	assert.NotContains(t, b.String(), `"client_address":"7.7.7.7"`)
	assert.Equal(t, 3, strings.Count(b.String(), `"client_address":"127.0.0.1`), "two tokenize events and the export's own: %s", b.String())
}

// The audit key rotates like the other audit keys: events keep their key version, and
// the chain verifies across the rotation.
func TestAuditKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	traffic(t, r, 1)
	st, err := store.Open(t.Context(), e.dbURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	defer st.Close()
	p, _, err := keys.OpenLocal(e.keyFile)
	require.NoError(t, err)
	kr := keys.NewKeyring(p, st)
	require.NoError(t, kr.Reload(t.Context()))
	v, err := kr.Rotate(t.Context(), keys.AuditMAC)
	require.NoError(t, err)
	require.Equal(t, 2, v)
	require.Eventually(t, func() bool {
		traffic(t, r, 1)
		rows := readChain(t, e.dbURL)
		return rows[len(rows)-1].MACVersion == 2
	}, 10*time.Second, 100*time.Millisecond, "the service picks up the new audit key")
	rows := readChain(t, e.dbURL)
	assert.Equal(t, 1, rows[0].MACVersion)
	res := verify(t, e, nil)
	assert.True(t, res.OK, res.Reason)
	assert.Equal(t, int64(len(rows)), res.EventsChecked)
}
