package grant

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
)

func purposeOK(c string) bool { return c == "TREAT" || c == "HOPERAT" }

// consentJSON is a permit for doc/* to see ssn for TREAT in a window, with a nested
// deny for one doctor.
const consentJSON = `{
  "resourceType": "Consent", "id": "c1", "status": "active",
  "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
  "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
  "patient": {"identifier": {"system": "urn:oid:1.2.3", "value": "MRN-00012345"}},
  "dateTime": "2026-11-22",
  "provision": {
    "type": "permit",
    "period": {"start": "2026-11-22T09:00:00Z", "end": "2026-11-22T17:00:00Z"},
    "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"identifier": {"value": "spiffe://h/doc/*"}}}],
    "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
    "securityLabel": [{"system": "urn:tokenizer:class", "code": "ssn"}],
    "provision": [{"type": "deny", "actor": [{"reference": {"identifier": {"value": "spiffe://h/doc/eve"}}}]}]
  }
}`

func TestParseConsent(t *testing.T) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	c, err := ParseConsent([]byte(consentJSON), ConsentOptions{Now: now, ValidPurpose: purposeOK})
	require.NoError(t, err)
	assert.Equal(t, "c1", c.ID)
	assert.Equal(t, "MRN-00012345", c.Subject)
	require.Len(t, c.Grants, 2)
	permit, deny := c.Grants[0], c.Grants[1]
	assert.False(t, permit.Deny)
	assert.Equal(t, "spiffe://h/doc/*", permit.Principal)
	assert.Equal(t, []string{"ssn"}, permit.Classes)
	assert.Equal(t, []string{"TREAT"}, permit.Purposes)
	assert.Equal(t, time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC), permit.NotBefore)
	assert.Equal(t, time.Date(2026, 11, 22, 17, 0, 0, 0, time.UTC), permit.NotAfter)
	assert.Equal(t, "Consent/c1 provision", permit.Justification)
	assert.True(t, deny.Deny)
	assert.Equal(t, "spiffe://h/doc/eve", deny.Principal)
	assert.Equal(t, []string{"*"}, deny.Classes, "no securityLabel: every class")
	assert.Equal(t, []string{"*"}, deny.Purposes, "no purpose on a deny: every purpose")
	assert.Equal(t, permit.NotAfter, deny.NotAfter, "a nested provision inherits the root's period")

	// The denial overrides the permit for eve, not for the other doctors.
	for i := range c.Grants {
		c.Grants[i].ID, c.Grants[i].SubjectID = []string{"g-permit", "g-deny"}[i], 1
	}
	r := Request{Caller: "spiffe://h/doc/eve", Class: "ssn", Purpose: "TREAT", SubjectID: 1, Now: now.Add(2 * time.Hour)}
	_, err = Check(c.Grants, r)
	assert.ErrorContains(t, err, "denied by g-deny")
	r.Caller = "spiffe://h/doc/bob"
	id, err := Check(c.Grants, r)
	require.NoError(t, err)
	assert.Equal(t, "g-permit", id)
}

var labels = map[string][]string{"http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY": {"mrn", "ssn"}}

func TestParseConsentLabelMapping(t *testing.T) {
	raw := []byte(`{"resourceType":"Consent","id":"c2","status":"active","patient":{"identifier":{"value":"MRN-1"}},
	  "provision":{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"},
	    {"system":"urn:tokenizer:class","code":"ssn"},{"system":"urn:tokenizer:class","code":"phone"}]}}`)
	c, err := ParseConsent(raw, ConsentOptions{Now: time.Now(), ValidPurpose: purposeOK, Labels: labels})
	require.NoError(t, err)
	require.Len(t, c.Grants, 1)
	assert.Equal(t, []string{"mrn", "phone", "ssn"}, c.Grants[0].Classes, "mapped and direct labels, once each")
	assert.Equal(t, []string{"*"}, c.Grants[0].Purposes)
	assert.Equal(t, "*", c.Grants[0].Principal, "no actor: every caller")
}

func TestParseConsentRefusals(t *testing.T) {
	now := time.Now()
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(consentJSON), &m))
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	prov := func(m map[string]any) map[string]any { return m["provision"].(map[string]any) }
	cases := map[string]struct {
		raw  []byte
		want string
	}{
		"not JSON":       {[]byte("{"), "consent: not a JSON object"},
		"not a Consent":  {[]byte(`{"resourceType":"Patient"}`), "resourceType: want Consent"},
		"policyRule":     {edit(func(m map[string]any) { m["policyRule"] = map[string]any{} }), "Consent.policyRule: not supported"},
		"modifierExt":    {edit(func(m map[string]any) { m["modifierExtension"] = []any{} }), "Consent.modifierExtension: not supported"},
		"draft":          {edit(func(m map[string]any) { m["status"] = "draft" }), "Consent.status: only active consents"},
		"patient by ref": {edit(func(m map[string]any) { m["patient"] = map[string]any{"reference": "Patient/1"} }), "Consent.patient.identifier.value: required"},
		"provision.data": {edit(func(m map[string]any) { prov(m)["data"] = []any{} }), "Consent.provision.data: not supported"},
		"provision.code": {edit(func(m map[string]any) { prov(m)["code"] = []any{} }), "Consent.provision.code: not supported"},
		"nested twice":   {edit(func(m map[string]any) { prov(m)["provision"].([]any)[0].(map[string]any)["provision"] = []any{} }), "Consent.provision.provision[0].provision: not supported"},
		"literal actor": {edit(func(m map[string]any) {
			prov(m)["actor"] = []any{map[string]any{"reference": map[string]any{"reference": "Practitioner/1"}}}
		}), "Consent.provision.actor[0].reference.reference: not supported"},
		"purpose system":  {edit(func(m map[string]any) { prov(m)["purpose"] = []any{map[string]any{"code": "TREAT"}} }), "Consent.provision.purpose[0].system: want http://terminology.hl7.org/CodeSystem/v3-ActReason"},
		"unknown purpose": {edit(func(m map[string]any) { prov(m)["purpose"].([]any)[0].(map[string]any)["code"] = "XYZ" }), "Consent.provision.purpose[0].code: not a supported code"},
		"unmapped label": {edit(func(m map[string]any) {
			prov(m)["securityLabel"] = []any{map[string]any{"system": "http://x", "code": "R"}}
		}), "Consent.provision.securityLabel[0]: no class mapping for this label"},
		"permit no end":     {edit(func(m map[string]any) { delete(prov(m), "period") }), "Consent.provision.period.end: required for a permit"},
		"permit no purpose": {edit(func(m map[string]any) { delete(prov(m), "purpose") }), "Consent.provision.purpose: required for a permit"},
		"bad type":          {edit(func(m map[string]any) { prov(m)["type"] = "maybe" }), "Consent.provision.type: want permit or deny"},
		"bad date":          {edit(func(m map[string]any) { prov(m)["period"].(map[string]any)["end"] = "tomorrow" }), "Consent.provision.period.end: not a FHIR dateTime"},
		"permit under deny": {edit(func(m map[string]any) {
			prov(m)["type"] = "deny"
			prov(m)["provision"].([]any)[0].(map[string]any)["type"] = "permit"
		}), "Consent.provision.provision[0].type: a permit nested in a deny is not supported"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConsent(c.raw, ConsentOptions{Now: now, ValidPurpose: purposeOK, Labels: labels})
			require.Error(t, err)
			assert.Equal(t, errs.InvalidArgument, errs.KindOf(err))
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "MRN-00012345", "errors never echo the patient")
		})
	}
}
