package server_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
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
	"github.com/phivault/tokenizer/internal/testutil/vaulttest"
)

const (
	patientA = "MRN-00012345"
	patientB = "MRN-00067890"
)

// subjectItem is one tokenized item of the subject tests.
type subjectItem struct {
	class, value, subject string
}

var subjectItems = []subjectItem{
	{"ssn", "123-45-6789", patientA},         // static, random
	{"ssn_fpe", "123-45-6789", patientA},     // static, FF1
	{"ssn_dynamic", "123-45-6789", patientA}, // dynamic
	{"ssn", "234-56-7890", patientB},
	{"ssn", "111-22-3333", ""},
}

func (r *running) subjects() tokenizerv1.SubjectServiceClient {
	return tokenizerv1.NewSubjectServiceClient(r.conn)
}

func tokenizeSubjects(t *testing.T, r *running, items []subjectItem) (tokens, subjectTokens []string) {
	t.Helper()
	req := &tokenizerv1.TokenizeRequest{}
	for _, it := range items {
		req.Items = append(req.Items, &tokenizerv1.TokenizeItem{Class: it.class, Value: it.value, Subject: it.subject})
	}
	resp, err := r.tokenizer().Tokenize(t.Context(), req)
	require.NoError(t, err)
	for i, res := range resp.Results {
		require.Nil(t, res.Error, "item %d: %v", i, res.Error)
		tokens = append(tokens, res.Token)
		subjectTokens = append(subjectTokens, res.SubjectToken)
	}
	return tokens, subjectTokens
}

// revealCodes detokenizes over gRPC and returns each item's value or its error code.
func revealCodes(t *testing.T, r *running, classes, tokens []string) []string {
	t.Helper()
	req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT"}
	for i := range tokens {
		req.Items = append(req.Items, &tokenizerv1.DetokenizeItem{Class: classes[i], Token: tokens[i]})
	}
	resp, err := r.tokenizer().Detokenize(t.Context(), req)
	require.NoError(t, err)
	out := make([]string, len(tokens))
	for i, res := range resp.Results {
		out[i] = res.Value
		if res.Error != nil {
			out[i] = codes.Code(res.Error.Code).String()
		}
	}
	return out
}

// revealCodesREST is revealCodes over the REST gateway.
func revealCodesREST(t *testing.T, r *running, classes, tokens []string) []string {
	t.Helper()
	var items []map[string]string
	for i := range tokens {
		items = append(items, map[string]string{"class": classes[i], "token": tokens[i]})
	}
	body, _ := json.Marshal(map[string]any{"purpose_of_use": "TREAT", "items": items})
	code, _, raw := r.rest(t, "/v1/detokenize", string(body))
	require.Equal(t, http.StatusOK, code, raw)
	var out struct {
		Results []struct {
			Value string
			Error *struct{ Code int32 }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(raw), &out))
	vals := make([]string, len(tokens))
	for i, res := range out.Results {
		vals[i] = res.Value
		if res.Error != nil {
			vals[i] = codes.Code(res.Error.Code).String()
		}
	}
	return vals
}

func pgDump(t *testing.T, dbURL string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "backup.sql")
	out, err := exec.Command("pg_dump", "--no-owner", "--no-privileges", "-d", dbURL, "-f", file).CombinedOutput()
	require.NoError(t, err, "pg_dump: %s", out)
	return file
}

func pgRestore(t *testing.T, file string) string {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	out, err := exec.Command("psql", "-v", "ON_ERROR_STOP=1", "-q", "-d", dbURL, "-f", file).CombinedOutput()
	require.NoError(t, err, "psql: %s", out)
	return dbURL
}

// keyRefs maps each stored subject's audit digest (hex) to its key reference.
func keyRefs(t *testing.T, dbURL string) map[string]string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), "SELECT encode(audit_digest, 'hex'), key_ref FROM subjects")
	require.NoError(t, err)
	out := map[string]string{}
	var digest, ref string
	_, err = pgx.ForEachRow(rows, []any{&digest, &ref}, func() error { out[digest] = ref; return nil })
	require.NoError(t, err)
	return out
}

func TestForgetSubjectLocalKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lp, _, err := keys.OpenLocal(e.keyFile)
	require.NoError(t, err)
	pub, err := lp.PublicKey(t.Context(), "")
	require.NoError(t, err)
	forgetSubject(t, e, nil, pub)
}

func TestForgetSubjectVaultKeys(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	e := newEnv(t)
	e.vaultAddr = v.Addr
	kvGone := func(ref string) bool {
		s, err := v.Client.Logical().Read("secret/metadata/tokenizer/subjects/" + ref)
		require.NoError(t, err)
		return s == nil
	}
	s, err := v.Client.Logical().Read("transit/keys/" + vaulttest.SigningKey)
	require.NoError(t, err)
	b64 := s.Data["keys"].(map[string]any)["1"].(map[string]any)["public_key"].(string)
	pub, err := base64.StdEncoding.DecodeString(b64)
	require.NoError(t, err)
	forgetSubject(t, e, kvGone, pub)
}

// forgetSubject is the erasure scenario on e: tokens of a subject in three classes,
// a backup, the erasure, NOT_FOUND everywhere, new tokens afterwards, a receipt that
// verifies offline, and the backup restored into a fresh database revealing nothing
// of the subject. keyGone (optional) checks that a key is gone from the provider.
func forgetSubject(t *testing.T, e *env, keyGone func(ref string) bool, pub ed25519.PublicKey) {
	ctx := t.Context()
	e.mutate = func(c *config.Config) {
		c.Subjects.Class = "mrn"
		c.Audit.CheckpointEvery, c.Audit.CheckpointInterval = 1, time.Second
	}
	r := e.start(t, true)
	tokens, subjectTokens := tokenizeSubjects(t, r, subjectItems)
	require.NotEmpty(t, subjectTokens[0])
	assert.Regexp(t, `^MRN-\d{8}$`, subjectTokens[0], "the subject's own token is in the subject class")
	assert.Equal(t, subjectTokens[0], subjectTokens[1], "one subject, one subject token")
	assert.Equal(t, subjectTokens[0], subjectTokens[2])
	assert.NotEqual(t, subjectTokens[0], subjectTokens[3])
	assert.Empty(t, subjectTokens[4], "an item without a subject has no subject token")
	assert.NotEqual(t, tokens[0], tokens[3])

	// Over REST the subject is a body field too, and a static class is deterministic.
	code, out, raw := r.rest(t, "/v1/tokenize", fmt.Sprintf(`{"items":[{"class":"ssn","value":"123-45-6789","subject":%q}]}`, patientA))
	require.Equal(t, http.StatusOK, code, raw)
	assert.Equal(t, tokens[0], out["results"].([]any)[0].(map[string]any)["token"])

	classes := []string{"ssn", "ssn_fpe", "ssn_dynamic", "ssn", "ssn", "mrn"}
	all := append(append([]string{}, tokens...), subjectTokens[0])
	assert.Equal(t, []string{"123-45-6789", "123-45-6789", "123-45-6789", "234-56-7890", "111-22-3333", patientA}, revealCodes(t, r, classes, all))
	refs := keyRefs(t, e.dbURL) // audit digest → key reference
	require.Len(t, refs, 2)
	backup := pgDump(t, e.dbURL)

	// Bad input changes nothing.
	code, _, raw = r.rest(t, "/v1/subjects:forget", fmt.Sprintf(`{"subject":%q,"reason":"  "}`, patientA))
	assert.Equal(t, http.StatusBadRequest, code, raw)
	assert.Contains(t, raw, "reason: required")
	assert.NotContains(t, raw, patientA, "errors never echo the subject")
	_, err := r.subjects().ForgetSubject(ctx, &tokenizerv1.ForgetSubjectRequest{Subject: "MRN-99999999", Reason: "test"})
	assert.Equal(t, codes.NotFound, status.Code(err), err)
	_, err = r.subjects().ForgetSubject(ctx, &tokenizerv1.ForgetSubjectRequest{Subject: "", Reason: "test"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), err)
	assert.Equal(t, "123-45-6789", revealCodes(t, r, classes[:1], tokens[:1])[0], "nothing was erased by refused requests")

	resp, err := r.subjects().ForgetSubject(ctx, &tokenizerv1.ForgetSubjectRequest{Subject: patientA, Reason: "GDPR Art. 17 request 4711"})
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"ssn": 1, "ssn_fpe": 1, "ssn_dynamic": 1, "mrn": 1}, resp.Erased)
	require.Len(t, resp.SubjectDigest, 64)
	if keyGone != nil {
		for digest, ref := range refs {
			assert.Equal(t, digest == resp.SubjectDigest, keyGone(ref), "only the erased subject's key is destroyed in the key provider")
		}
	}

	nf := codes.NotFound.String()
	want := []string{nf, nf, nf, "234-56-7890", "111-22-3333", nf}
	assert.Equal(t, want, revealCodes(t, r, classes, all), "gRPC")
	assert.Equal(t, want, revealCodesREST(t, r, classes, all), "REST")
	_, err = r.subjects().ForgetSubject(ctx, &tokenizerv1.ForgetSubjectRequest{Subject: patientA, Reason: "again"})
	assert.Equal(t, codes.NotFound, status.Code(err), "a subject is erased once")

	again, againSubject := tokenizeSubjects(t, r, subjectItems[:3])
	for i := range again {
		assert.NotEqual(t, tokens[i], again[i], "a re-tokenized value of an erased subject gets a new token (%s)", subjectItems[i].class)
	}
	assert.NotEqual(t, subjectTokens[0], againSubject[0])

	checkReceipt(t, r, resp.SubjectDigest, pub)
	res, err := r.audit().VerifyAudit(ctx, &tokenizerv1.VerifyAuditRequest{})
	require.NoError(t, err)
	assert.True(t, res.Ok, res.Reason)

	// The backup from before the erasure, restored, with the current keys: the
	// subject's rows are there, and none of them reveals.
	restored := pgRestore(t, backup)
	assert.Equal(t, int64(4), pgtest.Count(t, restored, "SELECT count(*) FROM tokens t JOIN subjects s ON s.id = t.subject_id WHERE s.key_ref = $1", refs[resp.SubjectDigest]))
	e2 := &env{dbURL: restored, keyFile: e.keyFile, logs: &syncBuffer{}, vaultAddr: e.vaultAddr, mutate: e.mutate}
	r2 := e2.start(t, true)
	assert.Equal(t, want, revealCodes(t, r2, classes, all), "the restored backup reveals nothing of the erased subject")
}

// checkReceipt fetches the subject's erasure receipt once a checkpoint covers it and
// verifies it offline; a tampered copy fails.
func checkReceipt(t *testing.T, r *running, digest string, pub ed25519.PublicKey) {
	var rc *tokenizerv1.ErasureReceipt
	require.Eventually(t, func() bool {
		resp, err := r.subjects().GetErasureReceipt(t.Context(), &tokenizerv1.GetErasureReceiptRequest{Subject: patientA})
		require.NoError(t, err)
		require.Len(t, resp.Receipts, 1)
		rc = resp.Receipts[0]
		return rc.CheckpointSeq > 0
	}, 20*time.Second, 200*time.Millisecond, "a signed checkpoint covers the receipt")
	assert.Equal(t, digest, rc.SubjectDigest)
	assert.Equal(t, "GDPR Art. 17 request 4711", rc.Reason)
	assert.Equal(t, map[string]int64{"ssn": 1, "ssn_fpe": 1, "ssn_dynamic": 1, "mrn": 1}, rc.Erased)
	assert.NotContains(t, rc.ReceiptJson, patientA)

	var doc audit.Receipt
	require.NoError(t, json.Unmarshal([]byte(rc.ReceiptJson), &doc))
	ev, err := audit.VerifyReceipt(doc, pub)
	require.NoError(t, err)
	assert.Equal(t, rc.Seq, ev.Seq)

	bad := doc
	bad.Event = strings.Replace(doc.Event, `"ssn":1`, `"ssn":0`, 1)
	_, err = audit.VerifyReceipt(bad, pub)
	assert.ErrorContains(t, err, "does not reach checkpoint")
	other := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	_, err = audit.VerifyReceipt(doc, other)
	assert.ErrorContains(t, err, "signature does not verify")
}

// TestForgetSubjectTwoReplicas erases on one replica and reveals on another at once:
// the mappings are gone from the shared database, so no reload interval applies; the
// other replica's cached subject key does not resurrect anything, and the same
// patient tokenized there afterwards is a new subject.
func TestForgetSubjectTwoReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r1 := e.start(t, true)
	r2 := e.start(t, true)
	tokens, _ := tokenizeSubjects(t, r1, subjectItems[:3])
	classes := []string{"ssn", "ssn_fpe", "ssn_dynamic"}
	assert.Equal(t, []string{"123-45-6789", "123-45-6789", "123-45-6789"}, revealCodes(t, r2, classes, tokens), "r2 reveals (and caches the subject key)")

	_, err := r1.subjects().ForgetSubject(t.Context(), &tokenizerv1.ForgetSubjectRequest{Subject: patientA, Reason: "test patient"})
	require.NoError(t, err)
	nf := codes.NotFound.String()
	assert.Equal(t, []string{nf, nf, nf}, revealCodes(t, r2, classes, tokens), "r2 answers NOT_FOUND on the next request")

	again, _ := tokenizeSubjects(t, r2, subjectItems[:3])
	for i := range again {
		assert.NotEqual(t, tokens[i], again[i], classes[i])
	}
	assert.Equal(t, []string{"123-45-6789", "123-45-6789", "123-45-6789"}, revealCodes(t, r1, classes, again), "the new subject works on both replicas")
}

// TestSubjectsAsTheServiceRole runs subjects, grants and erasure as a login role in
// tokenizer_service: the migrations grant what they need, no more.
func TestSubjectsAsTheServiceRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st, err := store.Open(t.Context(), e.dbURL, store.Options{MaxConns: 2})
	require.NoError(t, err)
	_, err = st.Migrate(t.Context())
	require.NoError(t, err)
	st.Close()
	login := fmt.Sprintf("tokenizer_subjects_%d", time.Now().UnixNano())
	pgtest.Exec(t, e.dbURL, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE tokenizer_service", login))
	t.Cleanup(func() { pgtest.Exec(t, pgtest.ServerURL(), "DROP ROLE IF EXISTS "+login) })
	e.dbURL = strings.Replace(e.dbURL, "postgres://postgres@", "postgres://"+login+"@", 1)
	r := e.start(t, true)
	ctx := t.Context()

	tokens, _ := tokenizeSubjects(t, r, subjectItems)
	gs := tokenizerv1.NewGrantServiceClient(r.conn)
	nb, na := window(-time.Minute, time.Hour)
	g, err := gs.CreateGrant(ctx, &tokenizerv1.CreateGrantRequest{Subject: patientA, Principal: "someone", Classes: []string{"ssn"},
		Purposes: []string{"TREAT"}, NotBefore: nb, NotAfter: na, RequiredApprovals: 1})
	require.NoError(t, err)
	_, err = gs.RevokeGrant(ctx, &tokenizerv1.RevokeGrantRequest{Id: g.Id})
	require.NoError(t, err)
	_, err = r.subjects().ForgetSubject(ctx, &tokenizerv1.ForgetSubjectRequest{Subject: patientA, Reason: "test"})
	require.NoError(t, err)
	nf := codes.NotFound.String()
	assert.Equal(t, []string{nf, "234-56-7890"}, revealCodes(t, r, []string{"ssn", "ssn"}, []string{tokens[0], tokens[3]}))
}
