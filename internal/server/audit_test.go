package server_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

func (r *running) audit() tokenizerv1.AuditServiceClient {
	return tokenizerv1.NewAuditServiceClient(r.conn)
}

// traffic makes n audited requests: tokenize, detokenize, alternately.
func traffic(t *testing.T, r *running, n int) {
	t.Helper()
	for i := range n {
		v := fmt.Sprintf("%03d-45-%04d", 100+i%500, 1000+i)
		resp, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: v}}})
		require.NoError(t, err)
		_, err = r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: resp.Results[0].Token}}})
		require.NoError(t, err)
	}
}

// superuser runs sql on the test database as the superuser, with the append-only
// triggers out of the way: what an attacker with database access could do.
func superuser(t *testing.T, dbURL string, sqls ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SET session_replication_role = replica")
	require.NoError(t, err)
	for _, q := range sqls {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
}

// verifier checks the chain directly, as `tokenizer audit verify` does.
func verify(t testing.TB, e *env, held []audit.Checkpoint) audit.Result {
	t.Helper()
	st, err := store.Open(t.Context(), e.dbURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	defer st.Close()
	p, _, err := keys.OpenLocal(e.keyFile)
	require.NoError(t, err)
	kr := keys.NewKeyring(p, st)
	require.NoError(t, kr.Reload(t.Context()))
	macs := func(v int) ([]byte, error) { k, err := kr.Version(keys.AuditMAC, v); return k.Material, err }
	res, err := audit.Verify(t.Context(), st, p, macs, 0, 0, held)
	require.NoError(t, err)
	return res
}

func TestAuditTamperDetection(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		tamper  func(t *testing.T, e *env) []audit.Checkpoint
		badSeq  int64
		because string
	}{
		{"modified event", func(t *testing.T, e *env) []audit.Checkpoint {
			superuser(t, e.dbURL, `UPDATE audit_events SET body = replace(body, '"caller":"dev"', '"caller":"someone-else"') WHERE seq = 5`)
			return nil
		}, 5, "modified"},
		{"deleted event", func(t *testing.T, e *env) []audit.Checkpoint {
			superuser(t, e.dbURL, `DELETE FROM audit_events WHERE seq = 4`)
			return nil
		}, 4, "missing"},
		{"reordered events", func(t *testing.T, e *env) []audit.Checkpoint {
			superuser(t, e.dbURL,
				`UPDATE audit_events SET seq = 1000006 WHERE seq = 6`,
				`UPDATE audit_events SET seq = 6 WHERE seq = 7`,
				`UPDATE audit_events SET seq = 7 WHERE seq = 1000006`)
			return nil
		}, 6, "prev_hash"},
		{"rewritten history with recomputed hashes", func(t *testing.T, e *env) []audit.Checkpoint {
			// The attacker rewrites event 3 and recomputes every hash after it: the
			// chain is consistent again, but the attacker cannot recompute the MACs
			// (the audit key is wrapped by the key provider), nor the signed checkpoint.
			rows := readChain(t, e.dbURL)
			prev := rows[1].Hash
			var sqls []string
			for _, r := range rows[2:] {
				body := r.Body
				if r.Seq == 3 {
					body = strings.Replace(body, `"purpose_of_use":""`, `"purpose_of_use":"TREAT"`, 1)
				}
				h := audit.Hash(prev, []byte(body))
				sqls = append(sqls, fmt.Sprintf(`UPDATE audit_events SET body = '%s', prev_hash = '\x%x', hash = '\x%x' WHERE seq = %d`, body, prev, h, r.Seq))
				prev = h
			}
			superuser(t, e.dbURL, sqls...)
			return nil
		}, 3, "MAC does not verify"},
		{"truncated tail against a held checkpoint", func(t *testing.T, e *env) []audit.Checkpoint {
			held := storedCheckpoints(t, e.dbURL)
			// The attacker cuts the tail and the checkpoints in the database with it;
			// the copy in the sink is what the auditor holds.
			superuser(t, e.dbURL, `DELETE FROM audit_events WHERE seq > 6`, `DELETE FROM audit_checkpoints`)
			return held
		}, 7, "truncated"},
		{"forged checkpoint", func(t *testing.T, e *env) []audit.Checkpoint {
			rows := readChain(t, e.dbURL)
			superuser(t, e.dbURL, fmt.Sprintf(`INSERT INTO audit_checkpoints (seq, hash, time, signature) VALUES (%d, '\x%x', now(), 'local:v1:AAAA')`, rows[4].Seq, rows[4].Hash))
			return nil
		}, 5, "signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			r := e.start(t, true)
			traffic(t, r, 6) // 12 events
			res, err := r.audit().VerifyAudit(t.Context(), &tokenizerv1.VerifyAuditRequest{})
			require.NoError(t, err)
			require.True(t, res.Ok, "untouched chain verifies: %s", res.Reason)
			require.GreaterOrEqual(t, res.EventsChecked, int64(12))
			// A signed checkpoint of the head (the server makes them periodically).
			checkpointNow(t, e)

			held := tc.tamper(t, e)
			got := verify(t, e, held)
			assert.False(t, got.OK)
			want := tc.badSeq
			if want == 0 {
				want = got.FirstBadSeq // rewritten history: the first checkpoint that disagrees
				assert.Positive(t, want)
			}
			assert.Equal(t, want, got.FirstBadSeq, got.Reason)
			assert.Contains(t, got.Reason, tc.because)

			// The RPC says the same (for what the database holds).
			if held == nil {
				rpc, err := r.audit().VerifyAudit(t.Context(), &tokenizerv1.VerifyAuditRequest{})
				require.NoError(t, err)
				assert.False(t, rpc.Ok)
				assert.Equal(t, got.FirstBadSeq, rpc.FirstBadSeq)
			}
		})
	}
}

func checkpointNow(t *testing.T, e *env) {
	t.Helper()
	st, err := store.Open(t.Context(), e.dbURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	defer st.Close()
	p, _, err := keys.OpenLocal(e.keyFile)
	require.NoError(t, err)
	cp := &audit.Checkpointer{Store: st, Signer: p, Log: quietLog()}
	got, err := cp.Checkpoint(t.Context())
	require.NoError(t, err)
	require.NotNil(t, got)
}

func readChain(t *testing.T, dbURL string) []audit.Row {
	t.Helper()
	st, err := store.Open(t.Context(), dbURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	defer st.Close()
	var rows []audit.Row
	require.NoError(t, st.ReadAudit(t.Context(), 1, 0, func(r audit.Row) error { rows = append(rows, r); return nil }))
	return rows
}

func storedCheckpoints(t *testing.T, dbURL string) []audit.Checkpoint {
	t.Helper()
	st, err := store.Open(t.Context(), dbURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	defer st.Close()
	cps, err := st.Checkpoints(t.Context(), 0, 0)
	require.NoError(t, err)
	require.NotEmpty(t, cps)
	return cps
}

func TestAuditFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	tok, err := r.tokenizer().Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "404-12-3456"}}})
	require.NoError(t, err)

	// The audit table stops accepting rows.
	pgtest.Exec(t, e.dbURL, `ALTER TABLE audit_events ADD CONSTRAINT refuse_all CHECK (seq < 0) NOT VALID`)
	resp, err := r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}})
	require.Error(t, err)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Nil(t, resp, "no response, so no value")
	assert.NotContains(t, err.Error(), "404-12-3456")

	// Over REST too, the body carries no value.
	code, _, raw := r.rest(t, "/v1/detokenize", `{"purpose_of_use":"TREAT","items":[{"class":"ssn","token":"`+tok.Results[0].Token+`"}]}`)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.NotContains(t, raw, "404-12-3456")

	// A stream message is not sent either.
	ds, err := r.tokenizer().DetokenizeStream(t.Context())
	require.NoError(t, err)
	require.NoError(t, ds.Send(&tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}}))
	_, err = ds.Recv()
	assert.Equal(t, codes.Unavailable, status.Code(err))

	pgtest.Exec(t, e.dbURL, `ALTER TABLE audit_events DROP CONSTRAINT refuse_all`)
	out, err := r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: tok.Results[0].Token}}})
	require.NoError(t, err)
	assert.Equal(t, "404-12-3456", out.Results[0].Value)
}

func TestTwoInstancesOneChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.start(t, true), e.start(t, true)
	const workers, each = 8, 15
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv := a
			if w%2 == 1 {
				srv = b
			}
			for i := range each {
				v := fmt.Sprintf("%03d-%02d-%04d", 100+w, 10+i, 1000+i)
				resp, err := srv.tokenizer().Tokenize(context.Background(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: v}}})
				if !assert.NoError(t, err) {
					return
				}
				_, err = srv.tokenizer().Detokenize(context.Background(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: resp.Results[0].Token}}})
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	res := verify(t, e, nil)
	assert.True(t, res.OK, res.Reason)
	assert.Equal(t, int64(workers*each*2), res.EventsChecked, "one event per request, no gaps, no forks")
	assert.Equal(t, res.EventsChecked, pgtest.Count(t, e.dbURL, "SELECT count(DISTINCT prev_hash) FROM audit_events"), "no two events share a parent")
}

func TestAccountingOfDisclosures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.start(t, true), e.start(t, true)
	ctx := t.Context()
	resp, err := a.tokenizer().Tokenize(ctx, &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "111-11-1111"}, {Class: "ssn", Value: "222-22-2222"},
	}})
	require.NoError(t, err)
	t1, t2 := resp.Results[0].Token, resp.Results[1].Token
	reveal := func(r *running, purpose, why string, toks ...string) {
		req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: purpose, Justification: why}
		for _, tk := range toks {
			req.Items = append(req.Items, &tokenizerv1.DetokenizeItem{Class: "ssn", Token: tk})
		}
		_, err := r.tokenizer().Detokenize(ctx, req)
		require.NoError(t, err)
	}
	reveal(a, "TREAT", "clinic visit", t1)
	reveal(b, "HPAYMT", "claim 77", t1, t2)
	reveal(b, "ETREAT", "unconscious patient", t1)
	reveal(a, "HRESCH", "", t2)
	_, err = a.tokenizer().DeleteTokens(ctx, &tokenizerv1.DeleteTokensRequest{Items: []*tokenizerv1.DeleteItem{{Class: "ssn", Token: t2}}})
	require.NoError(t, err)
	_, err = a.tokenizer().Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: t2}}})
	require.NoError(t, err) // NOT_FOUND for the item: not a disclosure

	list := func(r *running, tok string) []*tokenizerv1.Disclosure {
		out, err := r.audit().ListDisclosures(ctx, &tokenizerv1.ListDisclosuresRequest{Class: "ssn", Token: tok})
		require.NoError(t, err)
		return out.Disclosures
	}
	d1 := list(b, t1)
	require.Len(t, d1, 3)
	assert.Equal(t, []string{"TREAT", "HPAYMT", "ETREAT"}, []string{d1[0].PurposeOfUse, d1[1].PurposeOfUse, d1[2].PurposeOfUse})
	assert.Equal(t, "unconscious patient", d1[2].Justification)
	assert.True(t, d1[2].BreakGlass)
	assert.False(t, d1[0].BreakGlass)
	assert.Equal(t, "dev", d1[0].Caller)
	assert.NotEmpty(t, d1[0].RequestId)
	assert.NotEmpty(t, d1[0].ClientAddress)
	d2 := list(a, t2)
	require.Len(t, d2, 2)
	assert.Equal(t, "HPAYMT", d2[0].PurposeOfUse)
	assert.Equal(t, "HRESCH", d2[1].PurposeOfUse)
	// The same token presented without dashes is the same token.
	assert.Len(t, list(a, strings.ReplaceAll(t1, "-", "")), 3)
	// The log itself holds no value and no token.
	dump := pgtest.Dump(t, e.dbURL)
	for _, s := range []string{"111-11-1111", "111111111", t1, strings.ReplaceAll(t1, "-", ""), t2} {
		assert.NotContains(t, dump, s)
	}
}

func TestAuditExports(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	traffic(t, r, 3)
	_, err := r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "ETREAT", Justification: "=HYPERLINK(\"http://x\")", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: "912-34-5678"}}})
	require.NoError(t, err)
	_, err = r.tokenizer().Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: "912-34-5678"}}})
	require.Error(t, err) // refused (no purpose): audited too

	export := func(format string) string {
		resp, err := http.Get("http://" + r.addrs.HTTP + "/v1/audit/export?format=" + format)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		return string(body)
	}
	jsonl := export("EXPORT_FORMAT_JSONL")
	lines := strings.Split(strings.TrimSpace(jsonl), "\n")
	require.GreaterOrEqual(t, len(lines), 8)
	assert.True(t, strings.HasPrefix(lines[0], `{"event":{"break_glass":false,"caller":"dev"`), lines[0])
	assert.Contains(t, jsonl, `"outcome":"INVALID_ARGUMENT"`)
	assert.Contains(t, jsonl, `"operation":"export_audit"`, "the export itself is audited before it is sent")

	raw := export("EXPORT_FORMAT_CSV")
	recs, err := csv.NewReader(strings.NewReader(raw)).ReadAll()
	require.NoError(t, err)
	assert.Equal(t, "seq", recs[0][0])
	assert.Contains(t, raw, "\r\n", "RFC 4180 line ends")
	var just []string
	for _, rec := range recs[1:] {
		if rec[11] != "" {
			just = append(just, rec[11])
		}
	}
	assert.Contains(t, just, `'=HYPERLINK("http://x")`, "formula cells are escaped")

	fhir := export("EXPORT_FORMAT_FHIR")
	assert.Contains(t, fhir, `"code":"110106"`)
	assert.Contains(t, fhir, `"code":"reidentify"`)
	file := filepath.Join(t.TempDir(), "bundle.json")
	require.NoError(t, os.WriteFile(file, []byte(fhir), 0o600))
	validateFHIR(t, file)
}

// validateFHIR runs the npm fhir package's validator (make fhir-validator installs it).
func validateFHIR(t *testing.T, file string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir := filepath.Join(root, "tools", "fhir-validate")
	_, err = os.Stat(filepath.Join(dir, "node_modules", "fhir"))
	require.NoError(t, err, "the FHIR validator is not installed: run `make fhir-validator` (make test does)")
	out, err := exec.Command("node", filepath.Join(dir, "validate.js"), file).CombinedOutput()
	require.NoError(t, err, "FHIR validation failed:\n%s", out)
	assert.Contains(t, string(out), "valid:")
}

func TestServiceRoleCannotAlterTheLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	traffic(t, r, 1)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SET ROLE tokenizer_service")
	require.NoError(t, err)
	var n int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM audit_events").Scan(&n), "the role can read")
	for _, q := range []string{
		"UPDATE audit_events SET caller = 'x' WHERE seq = 1",
		"DELETE FROM audit_events WHERE seq = 1",
		"TRUNCATE audit_events",
		"UPDATE audit_checkpoints SET signature = 'x'",
		"DELETE FROM audit_checkpoints",
		"TRUNCATE audit_checkpoints",
	} {
		_, err := conn.Exec(ctx, q)
		require.Error(t, err, q)
		assert.Contains(t, err.Error(), "42501", q) // insufficient_privilege
	}
	// Even the owner is stopped by the append-only triggers.
	_, err = conn.Exec(ctx, "RESET ROLE")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "DELETE FROM audit_events WHERE seq = 1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "append-only")
}

func TestServiceRunsAsTheServiceRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Migrate as the owner, then run the service as a login role in tokenizer_service.
	st, err := store.Open(t.Context(), e.dbURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	_, err = st.Migrate(t.Context())
	require.NoError(t, err)
	st.Close()
	login := fmt.Sprintf("tokenizer_login_%d", time.Now().UnixNano())
	pgtest.Exec(t, e.dbURL, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE tokenizer_service", login))
	t.Cleanup(func() { pgtest.Exec(t, pgtest.ServerURL(), "DROP ROLE IF EXISTS "+login) })
	e.dbURL = strings.Replace(e.dbURL, "postgres://postgres@", "postgres://"+login+"@", 1)
	r := e.start(t, true)
	traffic(t, r, 2)
	res, err := r.audit().VerifyAudit(t.Context(), &tokenizerv1.VerifyAuditRequest{})
	require.NoError(t, err)
	assert.True(t, res.Ok, res.Reason)
	assert.Equal(t, int64(4), res.EventsChecked)
}

func TestCheckpointSink(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sink := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	e.mutate = func(c *config.Config) {
		c.Audit.CheckpointSink, c.Audit.CheckpointEvery, c.Audit.CheckpointInterval = sink, 4, time.Hour
	}
	r := e.start(t, true)
	traffic(t, r, 4)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(sink)
		return bytes.Count(b, []byte("\n")) >= 1
	}, 10*time.Second, 50*time.Millisecond, "a checkpoint after 4 events reaches the sink")
	f, err := os.Open(sink)
	require.NoError(t, err)
	defer f.Close()
	held, err := audit.ReadCheckpoints(f)
	require.NoError(t, err)
	require.NotEmpty(t, held)
	res := verify(t, e, held)
	assert.True(t, res.OK, res.Reason)
	assert.GreaterOrEqual(t, res.CheckpointsChecked, int64(len(held)))
}
