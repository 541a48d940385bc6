package fhir

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const researchProfile = `
name: research
ids: {class: fhir_id, types: [Patient, Encounter, Observation, Condition, MedicationRequest, Immunization, Claim, DiagnosticReport, Practitioner, Organization]}
default: {action: tokenize, class: fhir_text}
rules:
  - {path: "Patient.name.where(use = 'official').family", action: tokenize, class: name}
  - {path: "Patient.name.given", action: tokenize, class: name}
  - {path: "Patient.telecom.where(system = 'phone').value", action: tokenize, class: phone}
  - {path: "Patient.telecom.where(system = 'email').value", action: tokenize, class: email}
  - {path: "Patient.identifier.where(system = 'http://hl7.org/fhir/sid/us-ssn').value", action: tokenize, class: ssn}
  - {path: "Patient.identifier.value", action: tokenize, class: mrn}
  - {path: "Patient.address.line", action: tokenize, class: address}
  - {path: "Patient.address", action: keep}
  - {path: "Patient.birthDate", action: dateshift}
  - {path: "Observation.effective", action: dateshift}
  - {path: "Observation.value.ofType(Quantity)", action: keep}
  - {path: "Encounter.period", action: dateshift}
  - {path: "Patient.extension.where(url = 'http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName')", action: tokenize, class: name}
  - {path: "descendants().ofType(Reference).display", action: tokenize, class: fhir_text}
  - {path: "nodesByType('Annotation')", action: tokenize, class: fhir_text}
  - {path: "DiagnosticReport.conclusion", action: tokenize, class: fhir_text}
  - {path: "Resource.descendants().ofType(dateTime)", action: dateshift}
  - {path: "descendants().ofType(instant)", action: dateshift}
`

// everyStringProfile tokenizes every string and shifts every date: references and ids
// must still be handled by the id mapping, not by the string rule, in both directions.
const everyStringProfile = `
name: every_string
ids: {class: fhir_id, types: ["*"]}
rules:
  - {path: "descendants().ofType(string)", action: tokenize, class: fhir_text}
  - {path: "descendants().ofType(markdown)", action: tokenize, class: fhir_text}
  - {path: "descendants().ofType(date)", action: dateshift}
  - {path: "descendants().ofType(dateTime)", action: dateshift}
  - {path: "descendants().ofType(instant)", action: dateshift}
`

func customProfile(t testing.TB, src string) *Profile {
	t.Helper()
	p, err := ParseProfile([]byte(src), nil)
	require.NoError(t, err)
	return p
}

// shiftOf returns the days between two dateTimes' dates.
func shiftOf(t *testing.T, from, to string) int {
	t.Helper()
	a, err := time.Parse("2006-01-02", from[:10])
	require.NoError(t, err)
	b, err := time.Parse("2006-01-02", to[:10])
	require.NoError(t, err)
	return int(b.Sub(a).Hours() / 24)
}

func TestReversibleProfilesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		prof      func(testing.TB) *Profile
		bySubject bool
	}{
		{"limited_data_set", func(t testing.TB) *Profile { return preset(t, PresetLimitedDataSet) }, false},
		{"limited_data_set, tokens scoped by subject", func(t testing.TB) *Profile { return preset(t, PresetLimitedDataSet) }, true},
		{"custom", func(t testing.TB) *Profile { return customProfile(t, researchProfile) }, false},
		{"every string", func(t testing.TB) *Profile { return customProfile(t, everyStringProfile) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle, dates := testBundle(t)
			in := mustJSON(t, bundle)
			p, tok, _ := newTestProcessor(t, tc.prof(t))
			tok.bySubject = tc.bySubject
			out, rep := run(t, p, in, false)
			require.Empty(t, rep.Errors)
			assert.Equal(t, 29, rep.Resources)
			assert.Len(t, rep.Subjects, 3)
			validateFHIR(t, out)
			assertAbsent(t, out, plantedAll())
			assertAbsent(t, out, dates)
			deid := decodeJSON(t, out)
			assertReferencesResolve(t, deid)
			assertShiftsPerPatient(t, bundle, deid)
			for _, r := range resources(t, deid) {
				assert.Equal(t, []string{LabelPseudonymized}, labels(r), "only tokens and shifts: %s", r["resourceType"])
			}

			back, rep := run(t, p, out, true)
			require.Empty(t, rep.Errors)
			assert.Empty(t, rep.Unrestored)
			assert.Equal(t, decodeJSON(t, in), decodeJSON(t, back), "round trip is exact")
			assert.Positive(t, tok.items)
		})
	}
}

// assertShiftsPerPatient checks that every dateTime of a patient moved by one offset,
// and that the patients' offsets are not all the same.
func assertShiftsPerPatient(t *testing.T, orig, deid map[string]any) {
	t.Helper()
	per := map[int]map[int]bool{} // patient block → shifts seen
	oe, de := orig["entry"].([]any), deid["entry"].([]any)
	require.Len(t, de, len(oe))
	for i := 2; i < len(oe); i++ {
		block := (i - 2) / 9
		or := oe[i].(map[string]any)["resource"].(map[string]any)
		dr := de[i].(map[string]any)["resource"].(map[string]any)
		for _, k := range []string{"effectiveDateTime", "authoredOn", "occurrenceDateTime", "recordedDate", "created"} {
			if s, ok := or[k].(string); ok {
				if per[block] == nil {
					per[block] = map[int]bool{}
				}
				d := shiftOf(t, s, dr[k].(string))
				assert.NotZero(t, d)
				assert.LessOrEqual(t, d, 365)
				assert.GreaterOrEqual(t, d, -365)
				per[block][d] = true
			}
		}
	}
	require.Len(t, per, 3)
	all := map[int]bool{}
	for b, shifts := range per {
		assert.Len(t, shifts, 1, "patient %d: one offset for all resources", b)
		for d := range shifts {
			all[d] = true
		}
	}
	assert.Greater(t, len(all), 1, "patients have different offsets")
}

func TestOffsetStableAcrossRequestsAndProcessors(t *testing.T) {
	bundle, _ := testBundle(t)
	in := mustJSON(t, bundle)
	offs, err := NewMemoryOffsets(365)
	require.NoError(t, err)
	prof := preset(t, PresetLimitedDataSet)
	tok := newMemTokenizer()
	first, _ := run(t, NewProcessor(prof, tok, offs, testNow), in, false)
	second, _ := run(t, NewProcessor(prof, tok, offs, testNow), in, false)
	assert.Equal(t, string(first), string(second), "same tokens and same shifts in a second request (and processor) sharing the offset store")
	// A Patient alone, as NDJSON, gets the offset its Bundle got.
	pat := bundle["entry"].([]any)[2].(map[string]any)["resource"]
	var out bytes.Buffer
	_, err = NewProcessor(prof, tok, offs, testNow).DeidentifyNDJSON(context.Background(), bytes.NewReader(mustJSON(t, pat)), &out)
	require.NoError(t, err)
	got := decodeJSON(t, out.Bytes())
	want := decodeJSON(t, first)["entry"].([]any)[2].(map[string]any)["resource"].(map[string]any)
	assert.Equal(t, want["birthDate"], got["birthDate"])
	assert.Equal(t, want["id"], got["id"])
}

func TestDrawOffsetRange(t *testing.T) {
	seen := map[int]bool{}
	for range 4000 {
		d, err := DrawOffset(3)
		require.NoError(t, err)
		require.NotZero(t, d)
		require.LessOrEqual(t, d, 3)
		require.GreaterOrEqual(t, d, -3)
		seen[d] = true
	}
	assert.Len(t, seen, 6, "every offset in ±3 but 0 is drawn")
	_, err := NewMemoryOffsets(0)
	assert.Error(t, err)
}

func TestDatePrecisionKept(t *testing.T) {
	for _, tc := range []struct{ in, pattern string }{
		{"1987", `^\d{4}$`},
		{"1987-06", `^\d{4}-\d{2}$`},
		{"1987-06-15", `^\d{4}-\d{2}-\d{2}$`},
		{"2020-02-29", `^\d{4}-\d{2}-\d{2}$`},
		{"1987-06-15T10:20:30Z", `^\d{4}-\d{2}-\d{2}T10:20:30Z$`},
		{"1987-06-15T10:20:30.123456+05:30", `^\d{4}-\d{2}-\d{2}T10:20:30\.123456\+05:30$`},
		{"2020-12-31T23:59:59-14:00", `^\d{4}-\d{2}-\d{2}T23:59:59-14:00$`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			for _, days := range []int{1, -1, 15, -15, 45, 200, -365, 365} {
				s, err := shiftDate(tc.in, days)
				require.NoError(t, err)
				assert.Regexp(t, tc.pattern, s)
				assert.NotEqual(t, tc.in, s, "shift %d changes the value", days)
				_, err = parseDate(s)
				assert.NoError(t, err, "still valid")
				back, err := shiftDate(s, -days)
				require.NoError(t, err)
				assert.Equal(t, tc.in, back, "shift %d reverses exactly", days)
			}
		})
	}
	s, err := shiftDate("2020-02-29", 365)
	require.NoError(t, err)
	assert.Equal(t, "2021-02-28", s)
	for _, bad := range []string{"2021-02-30", "1987-6", "1987-06-15T10:20Z", "1987-06-15T10:20:30", "87", "0001-01-01"} {
		_, err := shiftDate(bad, -400)
		assert.Error(t, err, bad)
	}
}

func TestDatePrecisionThroughProfile(t *testing.T) {
	p, _, _ := newTestProcessor(t, preset(t, PresetLimitedDataSet))
	var lines []string
	values := []string{"1987", "1987-06", "1987-06-15", "1987-06-15T10:20:30Z", "1987-06-15T10:20:30.123+05:30"}
	for i, v := range values {
		lines = append(lines, string(mustJSON(t, obj(t, `{"resourceType":"Observation","id":"o%d","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":%q,"issued":"2001-02-03T04:05:06.789Z"}`, i, v))))
	}
	in := []byte(strings.Join(lines, "\n"))
	var out bytes.Buffer
	rep, err := p.DeidentifyNDJSON(context.Background(), bytes.NewReader(in), &out)
	require.NoError(t, err)
	require.Empty(t, rep.Errors)
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, got, len(values))
	for i, g := range got {
		r := decodeJSON(t, []byte(g))
		e := r["effectiveDateTime"].(string)
		assert.Len(t, e, len(values[i]), "precision of %s kept", values[i])
		assert.NotEqual(t, values[i], e)
		assert.Regexp(t, `^\d{4}-\d{2}-\d{2}T04:05:06\.789Z$`, r["issued"])
	}
	var back bytes.Buffer
	_, err = p.ReidentifyNDJSON(context.Background(), bytes.NewReader(out.Bytes()), &back)
	require.NoError(t, err)
	assert.Equal(t, string(in)+"\n", back.String())
}

func TestRevealWithheldOrMasked(t *testing.T) {
	bundle, _ := testBundle(t)
	in := mustJSON(t, bundle)
	p, tok, _ := newTestProcessor(t, preset(t, PresetLimitedDataSet))
	out, _ := run(t, p, in, false)
	tok.withheld["fhir_name"] = true
	tok.masked["fhir_telecom"] = true
	back, rep := run(t, p, out, true)
	require.Empty(t, rep.Errors)
	pat := decodeJSON(t, back)["entry"].([]any)[2].(map[string]any)["resource"].(map[string]any)
	family := pat["name"].([]any)[0].(map[string]any)["family"]
	assert.NotEqual(t, "Zyxwardson1", family, "names stay tokenized")
	assert.Len(t, family, len("Zyxwardson1"))
	assert.Contains(t, string(back), "Plantcity1")
	assert.Contains(t, string(back), "***-***-1001", "telecom revealed masked")
	assert.NotContains(t, string(back), "555-201-1001")
	reasons := map[string]int{}
	for _, u := range rep.Unrestored {
		reasons[u.Path+": "+strings.SplitN(u.Reason, ":", 2)[0]]++
	}
	assert.Contains(t, reasons, "Patient.name[0].family: not revealed")
	assert.Contains(t, reasons, "Patient.telecom[0].value: masked reveal")
	for _, u := range rep.Unrestored {
		assert.NotContains(t, u.Reason, "Zyxwardson")
	}
}

func TestSafeHarborReversalReportsWhatIsGone(t *testing.T) {
	bundle, _ := testBundle(t)
	in := mustJSON(t, bundle)
	p, _, _ := newTestProcessor(t, preset(t, PresetSafeHarbor))
	out, _ := run(t, p, in, false)
	back, rep := run(t, p, out, true)
	require.Empty(t, rep.Errors)
	got := decodeJSON(t, back)
	orig := decodeJSON(t, in)
	assert.Equal(t, orig["entry"].([]any)[2].(map[string]any)["resource"].(map[string]any)["id"],
		got["entry"].([]any)[2].(map[string]any)["resource"].(map[string]any)["id"], "ids come back")
	paths := map[string]bool{}
	for _, u := range rep.Unrestored {
		paths[u.Path] = true
	}
	assert.True(t, paths["Patient.birthDate"], "the year-only birth date is reported")
	assert.True(t, paths["Patient.address[0].postalCode"])
	assert.True(t, paths["nodesByType('HumanName')"], "redacted names are reported by rule")
	assert.NotContains(t, string(back), LabelSystem, "labels removed on re-identification")
}

func TestReidentifyWithoutOffsetLeavesDatesShifted(t *testing.T) {
	bundle, _ := testBundle(t)
	prof := preset(t, PresetLimitedDataSet)
	p, tok, _ := newTestProcessor(t, prof)
	out, _ := run(t, p, mustJSON(t, bundle), false)
	fresh, err := NewMemoryOffsets(365) // the offsets were erased with the subjects
	require.NoError(t, err)
	back, rep := run(t, NewProcessor(prof, tok, fresh, testNow), out, true)
	require.Empty(t, rep.Errors)
	pat := decodeJSON(t, back)["entry"].([]any)[2].(map[string]any)["resource"].(map[string]any)
	assert.Equal(t, "Zyxwardson1", pat["name"].([]any)[0].(map[string]any)["family"], "tokens still revealed")
	assert.NotEqual(t, "1978-03-14", pat["birthDate"], "the date stays shifted")
	found := false
	for _, u := range rep.Unrestored {
		found = found || u.Path == "Patient.birthDate" && strings.Contains(u.Reason, "no date-shift offset")
	}
	assert.True(t, found, "the report names the date")
	got, err := fresh.Offsets(context.Background(), []string{"Patient/" + testPatients[0].id}, false)
	require.NoError(t, err)
	assert.Empty(t, got, "re-identification never draws an offset")
}
