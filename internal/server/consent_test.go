package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

// consent is a FHIR R4 Consent of patient A: provisions is the JSON of the root
// provision.
func consent(id, provision string) string {
	return fmt.Sprintf(`{"resourceType":"Consent","id":%q,"status":"active",
  "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
  "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
  "patient":{"identifier":{"system":"urn:oid:2.16.840.1.113883.19.5","value":%q}},
  "provision":%s}`, id, patientA, provision)
}

func actor(id string) string {
	return fmt.Sprintf(`{"reference":{"identifier":{"value":%q}}}`, id)
}

const treat = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}`
const ssnLabel = `{"system":"urn:tokenizer:class","code":"ssn"}`

func period(from, to time.Duration) string {
	now := time.Now().UTC()
	return fmt.Sprintf(`{"start":%q,"end":%q}`, now.Add(from).Format(time.RFC3339), now.Add(to).Format(time.RFC3339))
}

func importConsent(t *testing.T, g *grantEnv, doc string) (*tokenizerv1.ImportConsentResponse, error) {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(doc), &m))
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return g.grants(t, admin).ImportConsent(t.Context(), &tokenizerv1.ImportConsentRequest{Consent: s})
}

func TestImportConsent(t *testing.T) {
	t.Parallel()
	g := startGrants(t, newEnv(t))
	ctx := t.Context()
	tokens, _ := tokenizeSubjects(t, g.p.r, subjectItems[:3])
	const bob = "spiffe://hospital.example/doc/bob"

	// A permit in its window, for TREAT, on ssn, over REST with the Consent as the body.
	permit := consent("c-permit", fmt.Sprintf(`{"type":"permit","period":%s,"actor":[%s],"purpose":[%s],"securityLabel":[%s]}`,
		period(-time.Minute, time.Hour), actor(doctor), treat, ssnLabel))
	leaf := g.p.ca.Issue(t, pkitestOptions("admin", admin))
	code, body, err := g.p.rest(t, &leaf, "/v1/grants:importConsent", permit)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"consent_id":"c-permit"`)
	v, err := g.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", v)
	_, err = g.revealAs(t, doctor, "HOPERAT", "ssn", tokens[0])
	assert.ErrorContains(t, err, "purpose HOPERAT not granted", "the consent's purpose bounds the grant")
	_, err = g.revealAs(t, doctor, "TREAT", "ssn_dynamic", tokens[2])
	assert.ErrorContains(t, err, "class ssn_dynamic not granted", "the securityLabel bounds the classes")

	// A period not begun yet.
	later, err := importConsent(t, g, consent("c-later", fmt.Sprintf(`{"type":"permit","period":%s,"actor":[%s],"purpose":[%s]}`,
		period(time.Hour, 2*time.Hour), actor(bob), treat)))
	require.NoError(t, err)
	require.Len(t, later.Grants, 1)
	_, err = g.revealAs(t, bob, "TREAT", "ssn", tokens[0])
	assert.ErrorContains(t, err, "grant "+later.Grants[0].Id+": not valid before")

	// Permit for every doctor with a nested deny for alice: the deny overrides her
	// earlier permit too, and bob (in his window now) is let through.
	both, err := importConsent(t, g, consent("c-deny", fmt.Sprintf(`{"type":"permit","period":%s,"actor":[%s],"purpose":[%s],
		"provision":[{"type":"deny","actor":[%s],"purpose":[%s]}]}`,
		period(-time.Minute, time.Hour), actor("spiffe://hospital.example/doc/*"), treat, actor(doctor), treat)))
	require.NoError(t, err)
	require.Len(t, both.Grants, 2)
	assert.False(t, both.Grants[0].Deny)
	assert.True(t, both.Grants[1].Deny)
	_, err = g.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	assert.ErrorContains(t, err, "denied by "+both.Grants[1].Id)
	v, err = g.revealAs(t, bob, "TREAT", "ssn", tokens[0])
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", v)

	// Unsupported elements are refused with their path, and nothing is stored.
	before, err := g.grants(t, admin).ListGrants(ctx, &tokenizerv1.ListGrantsRequest{Subject: patientA})
	require.NoError(t, err)
	for doc, path := range map[string]string{
		consent("c-bad", fmt.Sprintf(`{"type":"permit","period":%s,"actor":[%s],"purpose":[%s],"data":[{"meaning":"instance","reference":{"reference":"Observation/1"}}]}`,
			period(0, time.Hour), actor(bob), treat)): "Consent.provision.data: not supported",
		strings.Replace(consent("c-bad", `{"type":"deny"}`), `"status":"active"`, `"status":"active","policyRule":{"text":"x"}`, 1):            "Consent.policyRule: not supported",
		consent("c-bad", fmt.Sprintf(`{"type":"permit","period":%s,"actor":[%s],"purpose":[%s]}`, period(0, 48*time.Hour), actor(bob), treat)): "Consent.provision: not_after: the grant is longer than the configured maximum",
	} {
		_, err := importConsent(t, g, doc)
		assert.Equal(t, codes.InvalidArgument, status.Code(err), err)
		assert.ErrorContains(t, err, path)
	}
	after, err := g.grants(t, admin).ListGrants(ctx, &tokenizerv1.ListGrantsRequest{Subject: patientA})
	require.NoError(t, err)
	assert.Equal(t, len(before.Grants), len(after.Grants), "refused consents store nothing")
	assert.Len(t, after.Grants, 4)

	// Over REST: revoke the denial by its id in the path; bob's grant is unaffected and
	// alice's earlier consent grant works again.
	code, body, err = g.p.rest(t, &leaf, "/v1/grants/"+both.Grants[1].Id+":revoke", `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"status":"revoked"`)
	v, err = g.revealAs(t, doctor, "TREAT", "ssn", tokens[0])
	require.NoError(t, err)
	assert.Equal(t, "123-45-6789", v)
	code, body, err = g.p.rest(t, &leaf, "/v1/grants:list", `{"subject":"`+patientA+`"}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, 4, strings.Count(body, `"id":"g-`))
}

func pkitestOptions(cn, spiffe string) pkitest.Options {
	return pkitest.Options{CN: cn, SPIFFE: spiffe}
}
