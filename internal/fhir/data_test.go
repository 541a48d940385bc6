package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The test Bundle is written for these tests in the shape Synthea produces (urn:uuid
// fullUrls, US Core extensions, encounter-centred resources), with planted identifiers
// and dates that must not survive de-identification.

type testPatient struct {
	n                   int
	id, fullURL, refFmt string // refFmt: how other resources reference an id of a type
	birth, zip, city    string
	old                 bool
}

// planted returns the strings of patient n that no output may contain.
func planted(n int) []string {
	return []string{
		fmt.Sprintf("Zyxwardson%d", n), fmt.Sprintf("Quintavius%d", n), fmt.Sprintf("Maidenbury%d", n),
		fmt.Sprintf("123-45-678%d", n), fmt.Sprintf("MRN-5550%d", n), fmt.Sprintf("S9991234%d", n),
		fmt.Sprintf("555-201-100%d", n), fmt.Sprintf("quintavius%d@example.com", n),
		fmt.Sprintf("%d01 Planted Lane", n), fmt.Sprintf("Apt %d7", n), fmt.Sprintf("Kinsfolk%d", n),
		fmt.Sprintf("Plantbeneficiary%d", n), fmt.Sprintf("CLAIM-ACCT-%d", n),
	}
}

var testPatients = []testPatient{
	{n: 1, id: "1b7c52a0-0d6f-4b3e-9c1a-5e7d2f0a1b01", birth: "1978-03-14", zip: "02139", city: "Plantcity1"},
	{n: 2, id: "pat-2", birth: "1950-07-22", zip: "10001", city: "Plantcity2"},
	{n: 3, id: "3c9e1f2a-7b4d-4e8f-a1c2-9d3b5e7f0c03", birth: "1931-11-05", zip: "03601", city: "Plantcity3", old: true},
}

// dates hands out dateTimes with a time of day unique in the Bundle, so that a shifted
// value can never equal another planted one.
type dates struct{ k int }

func (d *dates) next(year int) string {
	d.k++
	zones := []string{"Z", "-05:00", "+01:00", ".250-04:00"}
	z := zones[d.k%len(zones)]
	frac := ""
	if strings.HasPrefix(z, ".") {
		frac, z = z[:4], z[4:]
	}
	return fmt.Sprintf("%d-%02d-%02dT%02d:%02d:%02d%s%s", year, 1+d.k%12, 1+d.k%27, 8+d.k%10, d.k%60, (d.k*7)%60, frac, z)
}

func (d *dates) instant(year int) string {
	d.k++
	return fmt.Sprintf("%d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, 1+d.k%12, 1+d.k%27, 8+d.k%10, d.k%60, (d.k*7)%60, d.k)
}

func obj(t *testing.T, format string, args ...any) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(fmt.Sprintf(format, args...)))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&m), fmt.Sprintf(format, args...))
	return m
}

// testBundle builds a transaction Bundle for the three patients, plus a shared
// Organization and Practitioner. It returns the Bundle and the planted dates.
func testBundle(t *testing.T) (map[string]any, []string) {
	t.Helper()
	d := &dates{}
	org := "urn:uuid:0a0b0c0d-1111-4222-8333-444455556666"
	pract := "urn:uuid:0a0b0c0d-7777-4888-9999-aaaabbbbcccc"
	entries := []any{
		entry(org, obj(t, `{"resourceType":"Organization","id":"0a0b0c0d-1111-4222-8333-444455556666","name":"Plantville General Hospital","address":[{"line":["1 Hospital Way"],"city":"Boston","state":"MA","postalCode":"02115"}]}`)),
		entry(pract, obj(t, `{"resourceType":"Practitioner","id":"0a0b0c0d-7777-4888-9999-aaaabbbbcccc","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"9999912345"}],"name":[{"family":"Plantedoc","given":["Pract"],"prefix":["Dr."]}],"gender":"female"}`)),
	}
	var plantedDates []string
	for _, p := range testPatients {
		es, ds := patientEntries(t, p, d, org, pract)
		entries = append(entries, es...)
		plantedDates = append(plantedDates, ds...)
	}
	return map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries}, plantedDates
}

func entry(fullURL string, res map[string]any) map[string]any {
	method, url := "POST", res["resourceType"].(string)
	if !strings.HasPrefix(fullURL, "urn:") {
		method, url = "PUT", url+"/"+res["id"].(string)
	}
	return map[string]any{"fullUrl": fullURL, "resource": res, "request": map[string]any{"method": method, "url": url}}
}

// patientEntries writes one patient's record. Patient 1 uses urn:uuid references,
// patient 2 relative and absolute URLs, patient 3 urn:uuid and is over 89.
func patientEntries(t *testing.T, p testPatient, d *dates, org, pract string) ([]any, []string) {
	n := p.n
	full := func(typ, id string) string {
		if p.n == 2 {
			return "http://example.org/fhir/" + typ + "/" + id
		}
		return "urn:uuid:" + id
	}
	ref := func(typ, id string) string {
		if p.n == 2 {
			return typ + "/" + id
		}
		return "urn:uuid:" + id
	}
	uid := func(k int) string { return fmt.Sprintf("%08d-aaaa-4bbb-8ccc-%012d", n, k) }
	pat := ref("Patient", p.id)
	patAbs := pat
	if p.n == 2 {
		patAbs = "http://example.org/fhir/Patient/" + p.id
	}
	death := `"deceasedBoolean": false`
	enc, encDT, encEnd := uid(1), d.next(2014), d.next(2014)
	obs1, obs1DT, obs1Issued := uid(2), d.next(2014), d.instant(2014)
	obs2, obs2DT := uid(3), d.next(2015)
	cond, condOnset, condRec := uid(4), d.next(2013), d.next(2014)
	med, medAuth, medStart := uid(5), d.next(2014), d.next(2014)
	imm, immDT := uid(6), d.next(2014)
	claim, claimStart, claimEnd, claimCreated := uid(7), d.next(2014), d.next(2014), d.next(2014)
	rep, repDT, repIssued := uid(8), d.next(2014), d.instant(2014)
	onset := fmt.Sprintf(`"onsetDateTime": %q`, condOnset)
	if p.old {
		onset = `"onsetAge": {"value": 92, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}`
	}
	display := fmt.Sprintf("Mr. Quintavius%d Zyxwardson%d", n, n)
	es := []any{
		entry(full("Patient", p.id), obj(t, `{"resourceType":"Patient","id":%q,
		  "extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":"Maidenbury%d"},
		    {"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex","valueCode":"M"}],
		  "identifier":[{"system":"https://github.com/synthetichealth/synthea","value":%q},
		    {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR","display":"Medical Record Number"}],"text":"Medical Record Number"},"system":"http://hospital.smarthealthit.org","value":"MRN-5550%d"},
		    {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS"}]},"system":"http://hl7.org/fhir/sid/us-ssn","value":"123-45-678%d"},
		    {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"DL"}]},"system":"urn:oid:2.16.840.1.113883.4.3.25","value":"S9991234%d"}],
		  "name":[{"use":"official","family":"Zyxwardson%d","given":["Quintavius%d"],"prefix":["Mr."]}],
		  "telecom":[{"system":"phone","value":"555-201-100%d","use":"home"},{"system":"email","value":"quintavius%d@example.com"}],
		  "gender":"male","birthDate":%q,%s,
		  "address":[{"line":["%d01 Planted Lane","Apt %d7"],"city":%q,"state":"MA","postalCode":%q,"country":"US"}],
		  "maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]},
		  "contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"N"}]}],"name":{"family":"Kinsfolk%d","given":["Relative"]},"telecom":[{"system":"phone","value":"555-301-100%d"}]}],
		  "communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"en-US"}]}}]}`,
			p.id, n, p.id, n, n, n, n, n, n, n, p.birth, death, n, n, p.city, p.zip, n, n)),
		entry(full("Encounter", enc), obj(t, `{"resourceType":"Encounter","id":%q,"identifier":[{"system":"urn:ietf:rfc:3986","value":"ENC-ACCT-%d"}],"status":"finished",
		  "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
		  "type":[{"coding":[{"system":"http://snomed.info/sct","code":"185349003"}],"text":"Encounter for check up"}],
		  "subject":{"reference":%q,"display":%q},
		  "participant":[{"individual":{"reference":%q,"display":"Dr. Pract Plantedoc"}}],
		  "period":{"start":%q,"end":%q},"serviceProvider":{"reference":%q,"display":"Plantville General Hospital"}}`,
			enc, n, pat, display, pract, encDT, encEnd, org)),
		entry(full("Observation", obs1), obj(t, `{"resourceType":"Observation","id":%q,"status":"final",
		  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		  "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}],"text":"Blood pressure panel"},
		  "subject":{"reference":%q},"encounter":{"reference":%q},"effectiveDateTime":%q,"issued":%q,
		  "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120.50,"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
		    {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`,
			obs1, patAbs, ref("Encounter", enc), obs1DT, obs1Issued)),
		entry(full("Observation", obs2), obj(t, `{"resourceType":"Observation","id":%q,"status":"final",
		  "code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}],"text":"Glucose"},
		  "subject":{"reference":%q},"encounter":{"reference":%q},"effectiveDateTime":%q,
		  "valueQuantity":{"value":5.40,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"},
		  "note":[{"text":"Reviewed with Quintavius%d on the phone"}]}`,
			obs2, pat, ref("Encounter", enc), obs2DT, n)),
		entry(full("Condition", cond), obj(t, `{"resourceType":"Condition","id":%q,
		  "clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
		  "code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}],"text":"Diabetes"},
		  "subject":{"reference":%q},"encounter":{"reference":%q},%s,"recordedDate":%q}`,
			cond, pat, ref("Encounter", enc), onset, condRec)),
		entry(full("MedicationRequest", med), obj(t, `{"resourceType":"MedicationRequest","id":%q,
		  "contained":[{"resourceType":"Practitioner","id":"req1","name":[{"family":"Containedson%d","given":["Helper"]}]}],
		  "status":"active","intent":"order",
		  "medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"860975"}]},
		  "subject":{"reference":%q},"encounter":{"reference":%q},"authoredOn":%q,
		  "requester":{"reference":"#req1"},
		  "dosageInstruction":[{"sequence":1,"timing":{"repeat":{"boundsPeriod":{"start":%q},"frequency":1,"period":1,"periodUnit":"d"}},"asNeededBoolean":false}]}`,
			med, n, pat, ref("Encounter", enc), medAuth, medStart)),
		entry(full("Immunization", imm), obj(t, `{"resourceType":"Immunization","id":%q,"status":"completed",
		  "identifier":[{"system":"urn:ietf:rfc:3986","value":"IMM-ACCT-%d"}],
		  "vaccineCode":{"coding":[{"system":"http://hl7.org/fhir/sid/cvx","code":"140"}],"text":"Influenza"},
		  "patient":{"reference":%q},"encounter":{"reference":%q},"occurrenceDateTime":%q,"primarySource":true}`,
			imm, n, pat, ref("Encounter", enc), immDT)),
		entry(full("Claim", claim), obj(t, `{"resourceType":"Claim","id":%q,"status":"active",
		  "identifier":[{"system":"urn:ietf:rfc:3986","value":"CLAIM-ACCT-%d"}],
		  "type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},
		  "use":"claim","patient":{"reference":%q,"display":%q},
		  "billablePeriod":{"start":%q,"end":%q},"created":%q,
		  "provider":{"reference":%q,"display":"Plantville General Hospital"},
		  "priority":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/processpriority","code":"normal"}]},
		  "insurance":[{"sequence":1,"focal":true,"identifier":{"system":"http://payer.example.org/member","value":"Plantbeneficiary%d"},"coverage":{"display":"Plantville Health Plan"}}],
		  "item":[{"sequence":1,"productOrService":{"coding":[{"system":"http://snomed.info/sct","code":"185349003"}]},"encounter":[{"reference":%q}],"net":{"value":129.41,"currency":"USD"}}],
		  "total":{"value":129.41,"currency":"USD"}}`,
			claim, n, pat, display, claimStart, claimEnd, claimCreated, org, n, ref("Encounter", enc))),
		entry(full("DiagnosticReport", rep), obj(t, `{"resourceType":"DiagnosticReport","id":%q,"status":"final",
		  "code":{"coding":[{"system":"http://loinc.org","code":"51990-0"}]},
		  "subject":{"reference":%q},"encounter":{"reference":%q},"effectiveDateTime":%q,"issued":%q,
		  "performer":[{"reference":%q,"display":"Dr. Pract Plantedoc"}],
		  "result":[{"reference":%q},{"reference":%q}],
		  "conclusion":"Quintavius%d Zyxwardson%d: glucose raised"}`,
			rep, pat, ref("Encounter", enc), repDT, repIssued, pract, ref("Observation", obs1), ref("Observation", obs2), n, n)),
	}
	ds := []string{p.birth, encDT, encEnd, obs1DT, obs1Issued, obs2DT, condRec, medAuth, medStart, immDT, claimStart, claimEnd, claimCreated, repDT, repIssued}
	if !p.old {
		ds = append(ds, condOnset)
	}
	return es, ds
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := encode(v)
	require.NoError(t, err)
	return b
}

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&m), "output is JSON")
	return m
}
