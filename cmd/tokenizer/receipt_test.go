package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// TestAuditReceiptCommand erases a subject through the service, then prints its
// receipt with `audit receipt --subject` and verifies it offline with `--verify`.
func TestAuditReceiptCommand(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.yaml"), []byte(fmt.Sprintf(`dev: true
insecure: true
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
admin_addr: 127.0.0.1:0
log:
  format: json
database:
  url: %s
subjects:
  class: mrn
audit:
  checkpoint_sink: checkpoints.jsonl
  checkpoint_every: 1
`, db)), 0o600))
	run := func(args ...string) (int, string) {
		cmd := exec.Command(binary, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		require.NoError(t, err)
		return 0, string(out)
	}

	p := startProcIn(t, dir, nil, "serve")
	require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
	waitReady(t, p.field("listening", "admin"))
	conn, err := grpc.NewClient(p.field("listening", "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	tc := tokenizerv1.NewTokenizerServiceClient(conn)
	res, err := tc.Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "555-44-3333", Subject: "MRN-00055555"},
		{Class: "phone", Value: "(415) 555-0100", Subject: "MRN-00055555"},
	}})
	require.NoError(t, err)
	_, err = tc.Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{
		{Class: "ssn", Token: res.Results[0].Token}, {Class: "phone", Token: res.Results[1].Token}}})
	require.NoError(t, err)
	_, err = tokenizerv1.NewSubjectServiceClient(conn).ForgetSubject(t.Context(), &tokenizerv1.ForgetSubjectRequest{Subject: "MRN-00055555", Reason: "test patient"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "checkpoints.jsonl"))
		cps, err := audit.ReadCheckpoints(bytes.NewReader(b))
		return err == nil && len(cps) > 0 && cps[len(cps)-1].Seq >= 3 // tokenize, detokenize, forget
	}, 10*time.Second, 50*time.Millisecond, "a checkpoint covers the erasure")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	<-p.done

	// The accounting of the patient's disclosures still answers after the erasure.
	code, out := run("audit", "disclosures", "--subject", "MRN-00055555")
	require.Equal(t, 0, code, out)
	assert.Equal(t, 1, strings.Count(out, `"purpose_of_use":"TREAT"`), out)
	assert.Contains(t, out, `"classes":["phone","ssn"]`)
	code, out = run("audit", "disclosures", "--subject", "MRN-00055555", "--format", "csv")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "seq,time,request_id")
	assert.Equal(t, 1, strings.Count(out, ",detokenize,"), out)

	code, out = run("audit", "receipt", "--subject", "MRN-00099999")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "no erasure receipt")

	cmd := exec.Command(binary, "audit", "receipt", "--subject", "MRN-00055555")
	cmd.Dir = dir
	doc, err := cmd.Output()
	require.NoError(t, err)
	assert.NotContains(t, string(doc), "MRN-00055555", "the receipt holds the subject's digest only")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "receipt.json"), doc, 0o600))

	verifyReceiptOffline(t, doc)

	code, out = run("audit", "verify", "--checkpoint", "checkpoints.jsonl")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "OK:")
}

// verifyReceiptOffline verifies doc with `audit receipt --verify` in an empty
// directory with no environment, then a tampered copy, which must fail.
func verifyReceiptOffline(t *testing.T, doc []byte) {
	t.Helper()
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "receipt.json"), doc, 0o600))
	verify := exec.Command(binary, "audit", "receipt", "--verify", "receipt.json")
	verify.Dir, verify.Env = other, []string{"PATH=/usr/bin:/bin"}
	vout, err := verify.CombinedOutput()
	require.NoError(t, err, string(vout))
	assert.Contains(t, string(vout), "OK: erasure of subject")
	assert.Contains(t, string(vout), `reason "test patient"`)
	assert.Contains(t, string(vout), "map[mrn:1 phone:1 ssn:1]")

	tampered := strings.Replace(string(doc), `\"phone\":1`, `\"phone\":0`, 1)
	require.NotEqual(t, string(doc), tampered)
	require.NoError(t, os.WriteFile(filepath.Join(other, "bad.json"), []byte(tampered), 0o600))
	bad := exec.Command(binary, "audit", "receipt", "--verify", "bad.json")
	bad.Dir = other
	bout, err := bad.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(bout), "FAILED: proof")

}

// TestGrantsReviewCommand lists an unreviewed break-glass grant and marks it reviewed.
func TestGrantsReviewCommand(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.yaml"), []byte(fmt.Sprintf(`dev: true
insecure: true
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
admin_addr: 127.0.0.1:0
log:
  format: json
database:
  url: %s
audit:
  checkpoint_sink: none
`, db)), 0o600))
	run := func(args ...string) (int, string) {
		cmd := exec.Command(binary, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		require.NoError(t, err)
		return 0, string(out)
	}
	p := startProcIn(t, dir, nil, "serve")
	require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
	waitReady(t, p.field("listening", "admin"))
	conn, err := grpc.NewClient(p.field("listening", "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	_, err = tokenizerv1.NewTokenizerServiceClient(conn).Tokenize(t.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{
		{Class: "ssn", Value: "555-44-3333", Subject: "MRN-00055555"}}})
	require.NoError(t, err)
	g, err := tokenizerv1.NewGrantServiceClient(conn).CreateGrant(t.Context(), &tokenizerv1.CreateGrantRequest{
		Subject: "MRN-00055555", Classes: []string{"*"}, BreakGlass: true, Justification: "cardiac arrest, ED"})
	require.NoError(t, err)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	<-p.done

	code, out := run("grants", "review")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, `"id":"`+g.Id+`"`)
	assert.Contains(t, out, "cardiac arrest, ED")
	code, out = run("grants", "review", "--ack", g.Id)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "grant "+g.Id+" reviewed by cli")
	code, out = run("grants", "review")
	require.Equal(t, 0, code, out)
	assert.NotContains(t, out, g.Id)
	code, out = run("grants", "review", "--ack", g.Id)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "no unreviewed break-glass grant")
}
