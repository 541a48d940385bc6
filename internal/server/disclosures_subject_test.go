package server_test

import (
	"encoding/csv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

const subjectPolicy = `
principals:
  - id: spiffe://hospital.example/ehr
    classes:
      "*": [tokenize, detokenize]
    operations: [disclosures, subject_forget]
    purposes: [TREAT]
    break_glass: true
  - id: "spiffe://hospital.example/batch/*"
    classes:
      "*": [tokenize, detokenize]
    purposes: [TREAT]
`

// startSubjectTLS is startTLS with the subject policy: two principals, ehr (who may
// break the glass, list disclosures and erase subjects) and batch.
func startSubjectTLS(t *testing.T) *pki {
	t.Helper()
	p := &pki{ca: pkitest.NewCA(t, "tokenizer test CA"), dir: t.TempDir()}
	srv := p.ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	ehr := p.ca.Issue(t, pkitest.Options{CN: "ehr", SPIFFE: "spiffe://hospital.example/ehr"})
	p.env = newEnv(t)
	p.env.tls = &tlsFiles{
		cert:   pkitest.Write(t, p.dir, "server.crt", srv.CertPEM),
		key:    pkitest.Write(t, p.dir, "server.key", srv.KeyPEM),
		ca:     pkitest.Write(t, p.dir, "clients-ca.pem", p.ca.PEM),
		policy: pkitest.Write(t, p.dir, "policy.yaml", []byte(subjectPolicy)),
	}
	p.env.client = pkitest.ClientConfig(p.ca, &ehr)
	p.r = p.env.start(t, true)
	return p
}

func reveal(t *testing.T, c tokenizerv1.TokenizerServiceClient, purpose, justification string, classes, tokens []string) {
	t.Helper()
	req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: purpose, Justification: justification}
	for i := range tokens {
		req.Items = append(req.Items, &tokenizerv1.DetokenizeItem{Class: classes[i], Token: tokens[i]})
	}
	resp, err := c.Detokenize(t.Context(), req)
	require.NoError(t, err)
	for i, r := range resp.Results {
		require.Nil(t, r.Error, "item %d", i)
	}
}

func TestDisclosuresBySubject(t *testing.T) {
	t.Parallel()
	p := startSubjectTLS(t)
	ctx := t.Context()
	ehr := p.r.tokenizer()
	leaf := p.leaf(t, "batch", "spiffe://hospital.example/batch/nightly")
	conn, err := grpc.NewClient(p.r.addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(p.ca, leaf))))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	batch := tokenizerv1.NewTokenizerServiceClient(conn)

	tokens, _ := tokenizeSubjects(t, p.r, subjectItems) // A: ssn, ssn_fpe, ssn_dynamic; B: ssn; none: ssn
	before := time.Now()
	reveal(t, ehr, "TREAT", "", []string{"ssn", "ssn_fpe"}, tokens[:2])                           // A twice, one event
	reveal(t, batch, "TREAT", "", []string{"ssn_dynamic", "ssn"}, []string{tokens[2], tokens[3]}) // A and B
	reveal(t, ehr, "ETREAT", "code blue, bed 4", []string{"ssn"}, tokens[:1])                     // A, break-glass
	reveal(t, ehr, "TREAT", "", []string{"ssn", "ssn"}, tokens[3:5])                              // B and nobody
	audit := tokenizerv1.NewAuditServiceClient(p.r.conn)

	list := func(subject string, start, end time.Time) []*tokenizerv1.Disclosure {
		req := &tokenizerv1.ListDisclosuresRequest{Subject: subject}
		if !start.IsZero() {
			req.StartTime = timestamppb.New(start)
		}
		if !end.IsZero() {
			req.EndTime = timestamppb.New(end)
		}
		resp, err := audit.ListDisclosures(ctx, req)
		require.NoError(t, err)
		return resp.Disclosures
	}
	ds := list(patientA, time.Time{}, time.Time{})
	require.Len(t, ds, 3, "three reveals of A's tokens")
	assert.Equal(t, "spiffe://hospital.example/ehr", ds[0].Caller)
	assert.Equal(t, []string{"ssn", "ssn_fpe"}, ds[0].Classes)
	assert.Equal(t, "spiffe://hospital.example/batch/nightly", ds[1].Caller)
	assert.Equal(t, []string{"ssn", "ssn_dynamic"}, ds[1].Classes)
	assert.True(t, ds[2].BreakGlass)
	assert.Equal(t, "ETREAT", ds[2].PurposeOfUse)
	assert.Equal(t, "code blue, bed 4", ds[2].Justification)
	assert.False(t, ds[0].BreakGlass || ds[1].BreakGlass)
	assert.Len(t, list(patientB, time.Time{}, time.Time{}), 2, "B: batch's and ehr's")
	assert.Empty(t, list(patientA, time.Now().Add(time.Hour), time.Time{}), "nothing after now")
	assert.Len(t, list(patientA, before.Add(-time.Minute), time.Now().Add(time.Minute)), 3)

	_, err = audit.ListDisclosures(ctx, &tokenizerv1.ListDisclosuresRequest{Subject: patientA,
		StartTime: timestamppb.New(time.Now().AddDate(-7, 0, 0)), EndTime: timestamppb.Now()})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "more than six years")
	_, err = audit.ListDisclosures(ctx, &tokenizerv1.ListDisclosuresRequest{Subject: patientA, Class: "ssn", Token: tokens[0]})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "subject or token, not both")
	_, err = audit.ListDisclosures(ctx, &tokenizerv1.ListDisclosuresRequest{Subject: " MRN"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.NotContains(t, err.Error(), "MRN")

	// CSV over gRPC: the header and one row per disclosure.
	rows, err := csv.NewReader(strings.NewReader(exportDisclosures(t, audit, tokenizerv1.ExportFormat_EXPORT_FORMAT_CSV))).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 4)
	assert.Equal(t, "detokenize", rows[1][4])
	assert.Equal(t, "spiffe://hospital.example/batch/nightly", rows[2][3])

	// FHIR over REST: a Bundle of three AuditEvents naming the patient, valid FHIR R4.
	code, body, err := p.rest(t, p.leaf(t, "ehr", "spiffe://hospital.example/ehr"), "/v1/audit/disclosures:export",
		`{"subject":"`+patientA+`","format":"EXPORT_FORMAT_FHIR"}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, 3, strings.Count(body, `"resourceType":"AuditEvent"`))
	assert.Equal(t, 4, strings.Count(body, `"urn:tokenizer:subject-digest"`), "A in each event, and B beside A in batch's")
	assert.Contains(t, body, `"code":"ETREAT"`)
	assert.NotContains(t, body, patientA)
	file := filepath.Join(t.TempDir(), "disclosures.json")
	require.NoError(t, os.WriteFile(file, []byte(body), 0o600))
	validateFHIR(t, file)

	// After erasure the accounting still answers: the log keeps digests, not values.
	_, err = tokenizerv1.NewSubjectServiceClient(p.r.conn).ForgetSubject(ctx, &tokenizerv1.ForgetSubjectRequest{Subject: patientA, Reason: "withdrawn consent"})
	require.NoError(t, err)
	assert.Len(t, list(patientA, time.Time{}, time.Time{}), 3)
}

func exportDisclosures(t *testing.T, c tokenizerv1.AuditServiceClient, f tokenizerv1.ExportFormat) string {
	t.Helper()
	st, err := c.ExportDisclosures(t.Context(), &tokenizerv1.ExportDisclosuresRequest{Subject: patientA, Format: f})
	require.NoError(t, err)
	var b strings.Builder
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return b.String()
		}
		require.NoError(t, err)
		b.Write(m.Data)
	}
}
