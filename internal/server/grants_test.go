package server_test

import (
	"context"
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

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

const grantPolicy = `
principals:
  - id: spiffe://hospital.example/admin
    classes:
      "*": [tokenize]
    operations: [grant_create, grant_approve, grant_revoke, disclosures]
  - id: "spiffe://hospital.example/approver/*"
    operations: [grant_approve]
  - id: "spiffe://hospital.example/doc/*"
    classes:
      ssn: [detokenize_granted]
      ssn_dynamic: [detokenize_granted]
      ssn_fpe: [detokenize]
    purposes: [TREAT, HOPERAT]
    break_glass: true
`

// grantEnv is a mTLS server with the grant policy and one connection per identity.
type grantEnv struct {
	p     *pki
	conns map[string]*grpc.ClientConn
}

func startGrants(t *testing.T, e *env) *grantEnv {
	t.Helper()
	p := &pki{ca: pkitest.NewCA(t, "tokenizer test CA"), dir: t.TempDir()}
	srv := p.ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	admin := p.ca.Issue(t, pkitest.Options{CN: "admin", SPIFFE: "spiffe://hospital.example/admin"})
	p.env = e
	if e.tls == nil {
		e.tls = &tlsFiles{
			cert:   pkitest.Write(t, p.dir, "server.crt", srv.CertPEM),
			key:    pkitest.Write(t, p.dir, "server.key", srv.KeyPEM),
			ca:     pkitest.Write(t, p.dir, "clients-ca.pem", p.ca.PEM),
			policy: pkitest.Write(t, p.dir, "policy.yaml", []byte(grantPolicy)),
		}
		e.client = pkitest.ClientConfig(p.ca, &admin)
	}
	e.mutate = func(c *config.Config) { c.Grants.MaxDuration = 24 * time.Hour }
	p.r = e.start(t, true)
	return &grantEnv{p: p, conns: map[string]*grpc.ClientConn{}}
}

func (g *grantEnv) conn(t *testing.T, spiffe string) *grpc.ClientConn {
	t.Helper()
	if c, ok := g.conns[spiffe]; ok {
		return c
	}
	leaf := g.p.ca.Issue(t, pkitest.Options{CN: "x", SPIFFE: spiffe})
	c, err := grpc.NewClient(g.p.r.addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(g.p.ca, &leaf))))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	g.conns[spiffe] = c
	return c
}

func (g *grantEnv) grants(t *testing.T, who string) tokenizerv1.GrantServiceClient {
	return tokenizerv1.NewGrantServiceClient(g.conn(t, who))
}

const (
	admin     = "spiffe://hospital.example/admin"
	doctor    = "spiffe://hospital.example/doc/alice"
	approver1 = "spiffe://hospital.example/approver/1"
	approver2 = "spiffe://hospital.example/approver/2"
)

// revealAs detokenizes one token as who and returns the item's value or error message.
func (g *grantEnv) revealAs(t *testing.T, who, purpose, class, token string) (string, error) {
	t.Helper()
	resp, err := tokenizerv1.NewTokenizerServiceClient(g.conn(t, who)).Detokenize(t.Context(), &tokenizerv1.DetokenizeRequest{
		PurposeOfUse: purpose, Justification: "bedside", Items: []*tokenizerv1.DetokenizeItem{{Class: class, Token: token}}})
	require.NoError(t, err)
	if e := resp.Results[0].Error; e != nil {
		require.Equal(t, int32(codes.PermissionDenied), e.Code, e.Message)
		return "", status.Error(codes.PermissionDenied, e.Message)
	}
	return resp.Results[0].Value, nil
}

func window(from, to time.Duration) (*timestamppb.Timestamp, *timestamppb.Timestamp) {
	now := time.Now()
	return timestamppb.New(now.Add(from)), timestamppb.New(now.Add(to))
}

func TestGrants(t *testing.T) {
	t.Parallel()
	g := startGrants(t, newEnv(t))
	ctx := t.Context()
	tokens, _ := tokenizeSubjects(t, g.p.r, subjectItems[:4]) // A: ssn, ssn_fpe, ssn_dynamic; B: ssn
	adm := g.grants(t, admin)

	_, err := g.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	assert.ErrorContains(t, err, "class ssn: revealable only under a grant: no grant for the caller")
	v, err := g.revealAs(t, doctor, "TREAT", "ssn_fpe", tokens[1])
	require.NoError(t, err, "a class with plain detokenize needs no grant")
	assert.Equal(t, "123-45-6789", v)

	grantBadInput(t, g)

	create := func(from, to time.Duration, approvals int32) string {
		nb, na := window(from, to)
		gr, err := adm.CreateGrant(ctx, &tokenizerv1.CreateGrantRequest{Subject: patientA, Principal: "spiffe://hospital.example/doc/*",
			Classes: []string{"ssn"}, Purposes: []string{"TREAT"}, NotBefore: nb, NotAfter: na, RequiredApprovals: approvals, Justification: "second opinion"})
		require.NoError(t, err)
		return gr.Id
	}
	future := create(time.Hour, 2*time.Hour, 0)
	past := create(-2*time.Hour, -time.Hour, 0)
	_, err = g.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	assert.ErrorContains(t, err, "grant "+future+": not valid before")
	assert.ErrorContains(t, err, "grant "+past+": expired at")

	twoPerson := create(-time.Minute, time.Hour, 2)
	_, err = g.grants(t, approver1).ApproveGrant(ctx, &tokenizerv1.ApproveGrantRequest{Id: twoPerson})
	require.NoError(t, err)
	_, err = g.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	assert.ErrorContains(t, err, "grant "+twoPerson+": approved by 1 of 2 required approvers")
	_, err = adm.ApproveGrant(ctx, &tokenizerv1.ApproveGrantRequest{Id: twoPerson})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	assert.ErrorContains(t, err, "the requester cannot approve their own grant")
	_, err = g.grants(t, approver1).ApproveGrant(ctx, &tokenizerv1.ApproveGrantRequest{Id: twoPerson})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "one approval per approver")
	gr, err := g.grants(t, approver2).ApproveGrant(ctx, &tokenizerv1.ApproveGrantRequest{Id: twoPerson})
	require.NoError(t, err)
	assert.Equal(t, "active", gr.Status)
	assert.Equal(t, []string{approver1, approver2}, gr.Approvers)

	v, err = g.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	require.NoError(t, err, "within the window, approved")
	assert.Equal(t, "123-45-6789", v)
	_, err = g.revealAs(t, doctor, "HOPERAT", "ssn", tokens[0])
	assert.ErrorContains(t, err, "grant "+twoPerson+": purpose HOPERAT not granted")
	_, err = g.revealAs(t, doctor, "TREAT", "ssn_dynamic", tokens[2])
	assert.ErrorContains(t, err, "grant "+twoPerson+": class ssn_dynamic not granted")
	_, err = g.revealAs(t, doctor, "TREAT", "ssn", tokens[3])
	assert.ErrorContains(t, err, "no grant for the caller", "patient B has no grant")
	_, err = g.revealAs(t, doctor, "TREAT", "ssn", "912-34-5678")
	assert.ErrorContains(t, err, "revealable only under a grant", "an unknown token is refused alike: no existence oracle")

	_, err = adm.RevokeGrant(ctx, &tokenizerv1.RevokeGrantRequest{Id: twoPerson})
	require.NoError(t, err)
	_, err = g.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	assert.ErrorContains(t, err, "grant "+twoPerson+": revoked")

	breakGlassAndAccounting(t, g, tokens, twoPerson)
}

// TestGrantRevokeTwoReplicas: a revocation on one replica holds on the other from its
// next request on. The bound is one request: grants are read from PostgreSQL at every
// reveal that needs one, never cached.
func TestGrantRevokeTwoReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g1 := startGrants(t, e)
	g2 := &grantEnv{p: &pki{ca: g1.p.ca, env: e, r: e.start(t, true)}, conns: map[string]*grpc.ClientConn{}}
	tokens, _ := tokenizeSubjects(t, g1.p.r, subjectItems[:1])
	nb, na := window(-time.Minute, time.Hour)
	gr, err := g1.grants(t, admin).CreateGrant(t.Context(), &tokenizerv1.CreateGrantRequest{Subject: patientA, Principal: doctor,
		Classes: []string{"ssn"}, Purposes: []string{"TREAT"}, NotBefore: nb, NotAfter: na})
	require.NoError(t, err)
	v, err := g2.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	require.NoError(t, err, "the grant created on replica 1 works on replica 2")
	assert.Equal(t, "123-45-6789", v)

	_, err = g1.grants(t, admin).RevokeGrant(context.Background(), &tokenizerv1.RevokeGrantRequest{Id: gr.Id})
	require.NoError(t, err)
	_, err = g2.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	assert.ErrorContains(t, err, "grant "+gr.Id+": revoked", "replica 2's next request after the revocation")
}

// grantBadInput: requests that must fail with a clear error and store nothing.
func grantBadInput(t *testing.T, g *grantEnv) {
	t.Helper()
	ctx := t.Context()
	adm := g.grants(t, admin)
	nb, na := window(0, time.Hour)
	bad := []struct {
		req  *tokenizerv1.CreateGrantRequest
		code codes.Code
		msg  string
	}{
		{&tokenizerv1.CreateGrantRequest{Subject: "MRN-99999999", Principal: doctor, Classes: []string{"ssn"}, Purposes: []string{"TREAT"}, NotBefore: nb, NotAfter: na}, codes.NotFound, "subject: unknown subject"},
		{&tokenizerv1.CreateGrantRequest{Subject: patientA, Principal: doctor, Classes: []string{"ssn"}, Purposes: []string{"TREAT"}, NotBefore: na, NotAfter: nb}, codes.InvalidArgument, "not_after: must be after not_before"},
		{&tokenizerv1.CreateGrantRequest{Subject: patientA, Principal: doctor, Classes: []string{"ssn"}, Purposes: []string{"TREAT"}, NotBefore: nb, NotAfter: timestamppb.New(time.Now().Add(25 * time.Hour))}, codes.InvalidArgument, "longer than the configured maximum of 24h0m0s"},
		{&tokenizerv1.CreateGrantRequest{Subject: patientA, Principal: doctor, Classes: []string{"nope"}, Purposes: []string{"TREAT"}, NotBefore: nb, NotAfter: na}, codes.InvalidArgument, "classes[0]: not a configured class"},
	}
	for _, b := range bad {
		_, err := adm.CreateGrant(ctx, b.req)
		assert.Equal(t, b.code, status.Code(err), err)
		assert.ErrorContains(t, err, b.msg)
	}
	list, err := adm.ListGrants(ctx, &tokenizerv1.ListGrantsRequest{Subject: patientA})
	require.NoError(t, err)
	assert.Empty(t, list.Grants, "nothing stored by refused requests")
	_, err = g.grants(t, doctor).CreateGrant(ctx, &tokenizerv1.CreateGrantRequest{Subject: patientA, Principal: doctor, Classes: []string{"ssn"}, Purposes: []string{"TREAT"}, NotBefore: nb, NotAfter: na})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "doctors may not grant themselves access")

}

// breakGlassAndAccounting: a break-glass grant, then the accounting of disclosures of
// patient A naming the grants (twoPerson: the approved grant revealed under earlier).
func breakGlassAndAccounting(t *testing.T, g *grantEnv, tokens []string, twoPerson string) {
	t.Helper()
	ctx := t.Context()
	adm := g.grants(t, admin)
	// Break-glass: the doctor's own short grant, active at once, flagged for review.
	_, err := g.grants(t, doctor).CreateGrant(ctx, &tokenizerv1.CreateGrantRequest{Subject: patientA, Classes: []string{"*"}, BreakGlass: true})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "a justification is required")
	bg, err := g.grants(t, doctor).CreateGrant(ctx, &tokenizerv1.CreateGrantRequest{Subject: patientA, Classes: []string{"*"}, BreakGlass: true, Justification: "unconscious, ED bed 4"})
	require.NoError(t, err)
	assert.Equal(t, doctor, bg.Principal)
	assert.Equal(t, "active", bg.Status)
	assert.InDelta(t, time.Hour.Seconds(), bg.NotAfter.AsTime().Sub(bg.NotBefore.AsTime()).Seconds(), 1, "one hour by default")
	v, err := g.revealAs(t, doctor, "ETREAT", "ssn_dynamic", tokens[2])
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", v)
	unreviewed, err := adm.ListGrants(ctx, &tokenizerv1.ListGrantsRequest{UnreviewedBreakGlass: true})
	require.NoError(t, err)
	require.Len(t, unreviewed.Grants, 1)
	assert.Equal(t, bg.Id, unreviewed.Grants[0].Id)

	// The accounting names the grants: two reveals of A under grants, plus the
	// ssn_fpe reveal that needed none.
	ds, err := tokenizerv1.NewAuditServiceClient(g.conn(t, admin)).ListDisclosures(ctx, &tokenizerv1.ListDisclosuresRequest{Subject: patientA})
	require.NoError(t, err)
	require.Len(t, ds.Disclosures, 3)
	assert.Empty(t, ds.Disclosures[0].Grants)
	assert.Equal(t, []string{twoPerson}, ds.Disclosures[1].Grants)
	assert.Equal(t, []string{bg.Id}, ds.Disclosures[2].Grants)
	assert.True(t, ds.Disclosures[2].BreakGlass)
	all, err := adm.ListGrants(ctx, &tokenizerv1.ListGrantsRequest{Subject: patientA})
	require.NoError(t, err)
	assert.Len(t, all.Grants, 4)

	// The FHIR accounting names the grants and validates.
	fhir := exportDisclosures(t, tokenizerv1.NewAuditServiceClient(g.conn(t, admin)), tokenizerv1.ExportFormat_EXPORT_FORMAT_FHIR)
	assert.Equal(t, 3, strings.Count(fhir, `"resourceType":"AuditEvent"`))
	assert.Contains(t, fhir, `{"type":"grants","valueString":"`+twoPerson+`"}`)
	file := filepath.Join(t.TempDir(), "grants.json")
	require.NoError(t, os.WriteFile(file, []byte(fhir), 0o600))
	validateFHIR(t, file)
}
