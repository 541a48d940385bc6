package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A primitive's "_element" sibling (id and extensions) describes the original value: a
// patient-birthTime extension beside birthDate holds the exact date and time. No rule
// examines them, so de-identification drops them all, with or without their value.
func TestPrimitiveExtensionsGoWithTheirValue(t *testing.T) {
	in := []byte(`{"resourceType":"Patient","id":"pe-1","gender":"female","_gender":{"id":"g1"},
		"_deceasedDateTime":{"extension":[{"url":"http://example.org/ext","valueDateTime":"1999-01-02T03:04:05Z"}]},
		"telecom":[{"system":"phone","_value":{"extension":[{"url":"x","valueString":"617-555-0199"}]}}],
		"birthDate":"1961-04-18","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1961-04-18T08:30:00-05:00"}]},
		"name":[{"family":"Rivera","given":["Ana","Luz"],"_given":[{"extension":[{"url":"http://example.org/ext","valueString":"Ana-Secret"}]},null]}]}`)
	for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
		t.Run(name, func(t *testing.T) {
			p, _, _ := newTestProcessor(t, preset(t, name))
			out, rep := run(t, p, in, false)
			require.Empty(t, rep.Errors)
			for _, planted := range []string{"1961-04-18", "08:30", "Ana-Secret", "Rivera", "birthTime", "1999-01-02", "617-555-0199"} {
				assert.NotContains(t, string(out), planted)
			}
			assert.NotContains(t, string(out), `"_gender"`, "no primitive extension is kept")
		})
	}
}

// A contained resource of a type the model does not know would pass through unexamined
// (names, telecom and the patient's reference included): the resource fails instead.
func TestUnsupportedContainedResourceFailsTheResource(t *testing.T) {
	in := []byte(`{"resourceType":"Observation","id":"o-1","status":"final","code":{"text":"x"},
		"subject":{"reference":"Patient/MRN-00412345"},"effectiveDateTime":"2020-01-01",
		"contained":[{"resourceType":"RelatedPerson","id":"rp","patient":{"reference":"Patient/MRN-00412345"},
		"name":[{"family":"Relfamily"}],"telecom":[{"system":"phone","value":"617-555-0102"}]}]}`)
	for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
		t.Run(name, func(t *testing.T) {
			p, _, _ := newTestProcessor(t, preset(t, name))
			out, rep := run(t, p, in, false)
			require.Len(t, rep.Errors, 1)
			assert.Equal(t, "Observation.contained[0]", rep.Errors[0].Path)
			assert.Contains(t, rep.Errors[0].Reason, "unsupported contained resource type")
			for _, planted := range []string{"Relfamily", "617-555-0102", "MRN-00412345", "RelatedPerson"} {
				assert.NotContains(t, string(out), planted)
				assert.NotContains(t, rep.Errors[0].Error(), planted)
			}
		})
	}
}

// Elements the model does not describe would pass through unexamined: a misspelled
// element, an element of a type the service does not model (an extension's
// valueContactDetail or valueSignature), an "_element" sibling of no primitive, a
// primitive of the wrong JSON type. The resource is refused, naming the path.
func TestUnmodelledElementsFailTheirResource(t *testing.T) {
	for _, tc := range []struct{ in, path string }{
		{`{"resourceType":"Patient","id":"a","birthdate":"1953-07-21"}`, "Patient.birthdate"},
		{`{"resourceType":"Patient","id":"a","telecoms":[{"value":"617-555-0199"}]}`, "Patient.telecoms"},
		{`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"valueZorbType":{"family":"Zorblatt"}}`, "Observation.valueZorbType"},
		{`{"resourceType":"Patient","id":"a","extension":[{"url":"http://x","valueContactDetail":{"name":"Zorblatt","telecom":[{"value":"617-555-0199"}]}}]}`, "Patient.extension[0].valueContactDetail"},
		{`{"resourceType":"Patient","id":"a","extension":[{"url":"http://x","valueSignature":{"when":"1953-07-21T10:00:00Z","who":{"display":"Zorblatt"}}}]}`, "Patient.extension[0].valueSignature"},
		{`{"resourceType":"Patient","id":"a","_name":{"extension":[{"url":"x","valueString":"Zorblatt"}]}}`, "Patient._name"},
		{`{"resourceType":"Patient","id":"a","birthDate":19530721}`, "Patient.birthDate"},
		{`{"resourceType":"Patient","id":"a","telecom":[{"value":6175550199}]}`, "Patient.telecom[0].value"},
		{`{"resourceType":"Patient","id":"a","identifier":[{"value":99123}]}`, "Patient.identifier[0].value"},
		{`{"resourceType":"Patient","id":"a","name":[{"family":12345}]}`, "Patient.name[0].family"},
	} {
		for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
			p, _, _ := newTestProcessor(t, preset(t, name))
			out, rep := run(t, p, []byte(tc.in), false)
			require.Len(t, rep.Errors, 1, "%s: %s", name, tc.in)
			assert.Equal(t, tc.path, rep.Errors[0].Path, name)
			for _, planted := range []string{"1953", "Zorblatt", "617", "99123", "12345"} {
				assert.NotContains(t, string(out), planted, "%s: %s", name, tc.in)
				assert.NotContains(t, rep.Errors[0].Error(), planted)
			}
		}
	}
}

// A repeated top-level key would let a second "entry" (or "resourceType") through
// unprocessed: most readers keep the last copy. The request is refused.
func TestRepeatedTopLevelKeysAreRefused(t *testing.T) {
	p, _, _ := newTestProcessor(t, preset(t, PresetLimitedDataSet))
	for _, in := range []string{
		`{"resourceType":"Bundle","type":"collection","entry":[],"entry":[{"resource":{"resourceType":"Patient","name":[{"family":"Zorblatt"}]}}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"Zorblatt"}]}}],"resourceType":"Patient"}`,
		`{"resourceType":"Patient","id":"a","resourceType":"Patient"}`,
	} {
		var out bytes.Buffer
		_, err := p.DeidentifyJSON(context.Background(), strings.NewReader(in), &out)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), "appears twice")
		assert.NotContains(t, out.String()+err.Error(), "Zorblatt")
	}
}

// Bundle and entry parts no rule examines are dropped (the Bundle's identifier, timestamp
// and meta; conditional headers; a response's OperationOutcome; entry extensions), and an
// entry whose request URL carries search parameters fails.
func TestBundlePartsNoRuleExaminesAreDropped(t *testing.T) {
	in := []byte(`{"resourceType":"Bundle","type":"transaction","identifier":{"value":"MRN-99123"},"timestamp":"1953-07-21T10:00:00Z",
		"meta":{"lastUpdated":"1953-07-21T10:00:00Z"},"entry":[
	{"fullUrl":"urn:uuid:5a1b2c3d-0000-4000-8000-0000000000a1","extension":[{"url":"x","valueString":"Zorblatt"}],
	 "resource":{"resourceType":"Patient","id":"5a1b2c3d-0000-4000-8000-0000000000a1","gender":"male"},
	 "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=MRN-99123"},
	 "response":{"status":"201","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"created Zorblatt"}]}}},
	{"resource":{"resourceType":"Patient","id":"b","gender":"female"},"request":{"method":"PUT","url":"Patient?identifier=MRN-99123"}}]}`)
	for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
		p, _, _ := newTestProcessor(t, preset(t, name))
		out, rep := run(t, p, in, false)
		for _, planted := range []string{"MRN-99123", "1953", "Zorblatt"} {
			assert.NotContains(t, string(out), planted, name)
		}
		require.Len(t, rep.Errors, 1, name)
		assert.Equal(t, 1, rep.Errors[0].Index)
		assert.Equal(t, "Bundle.entry.request.url", rep.Errors[0].Path)
		assert.Contains(t, string(out), `"gender":"male"`, "the other entry is processed")
	}
}

// Safe Harbor ages: an Age in months or days is converted before the 89-year test, and a
// birth year (or month) that may belong to someone over 89 is removed (testNow is
// 2026-06-01: someone born in 1936 may be 90).
func TestAgesOver89WhateverTheUnitOrPrecision(t *testing.T) {
	p, _, _ := newTestProcessor(t, preset(t, PresetSafeHarbor))
	cond := func(age string) []byte {
		return []byte(`{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p"},"code":{"text":"x"},"onsetAge":` + age + `}`)
	}
	out, rep := run(t, p, cond(`{"value":1150,"unit":"mo","system":"http://unitsofmeasure.org","code":"mo"}`), false)
	require.Empty(t, rep.Errors)
	assert.Contains(t, string(out), `"comparator":">="`)
	assert.Contains(t, string(out), `"code":"a"`, "95 years in months is 90+ years, not 90+ months")
	assert.NotContains(t, string(out), "1150")
	out, rep = run(t, p, cond(`{"value":100,"unit":"mo","system":"http://unitsofmeasure.org","code":"mo"}`), false)
	require.Empty(t, rep.Errors)
	assert.Contains(t, string(out), `"value":100`, "8 years is kept")
	assert.NotContains(t, string(out), "comparator")
	_, rep = run(t, p, cond(`{"value":40,"unit":"parsecs"}`), false)
	require.Len(t, rep.Errors, 1, "an age in no time unit is refused")

	for _, birth := range []string{"1936", "1936-05", "1925"} {
		out, rep := run(t, p, []byte(`{"resourceType":"Patient","id":"p","birthDate":"`+birth+`"}`), false)
		require.Empty(t, rep.Errors)
		assert.NotContains(t, string(out), "birthDate", "%s may mean 90 or older", birth)
	}
	out, _ = run(t, p, []byte(`{"resourceType":"Patient","id":"p","birthDate":"1937"}`), false)
	assert.Contains(t, string(out), `"birthDate":"1937"`, "at most 89")
	out, _ = run(t, p, []byte(`{"resourceType":"Patient","id":"p","birthDate":"1936-11"}`), false)
	assert.Contains(t, string(out), `"birthDate":"1936"`, "born in November 1936: 89 in June 2026")
}

// A reference to a Patient that is not a literal Type/id (a search, an operation, an
// odd path, an id with a type beside it) would keep the patient's id: the resource fails.
func TestPatientReferencesThatCannotBeMappedFail(t *testing.T) {
	p, _, _ := newTestProcessor(t, preset(t, PresetLimitedDataSet))
	for _, ref := range []string{
		`{"reference":"MRN-99123","type":"Patient"}`,
		`{"reference":"Patient/MRN-99123/$everything"}`,
		`{"reference":"../Patient/MRN-99123"}`,
		`{"reference":"Patient/MRN_99123"}`,
		`{"reference":"Patient?identifier=MRN-99123"}`,
	} {
		out, rep := run(t, p, []byte(`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"subject":`+ref+`}`), false)
		require.Len(t, rep.Errors, 1, ref)
		assert.Equal(t, "Observation.subject.reference", rep.Errors[0].Path)
		assert.NotContains(t, string(out), "99123")
		assert.NotContains(t, rep.Errors[0].Error(), "99123")
	}
}

// An Address's geolocation extension holds latitude and longitude to street precision:
// numbers under an identifying element are removed (with their extension, which FHIR
// does not allow without a value), under both presets.
func TestGeolocationIsRemoved(t *testing.T) {
	in := []byte(`{"resourceType":"Patient","id":"g","address":[{"city":"Boston","state":"MA","postalCode":"02139",
		"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/geolocation","extension":[
		{"url":"latitude","valueDecimal":42.3624119},{"url":"longitude","valueDecimal":-71.0829413}]}]}]}`)
	for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
		p, _, _ := newTestProcessor(t, preset(t, name))
		out, rep := run(t, p, in, false)
		require.Empty(t, rep.Errors, name)
		assert.NotContains(t, string(out), "42.36", name)
		assert.NotContains(t, string(out), "71.08", name)
		assert.NotContains(t, string(out), `"url":"latitude"`, "%s: no extension is left without its value", name)
	}
}

// Safe Harbor (A) and the limited data set cover the names of the individual's employers,
// and an Organization may be one (Patient.contact with relationship E points to it): its
// name and aliases are removed under safe_harbor and tokenized, reversibly, under
// limited_data_set.
func TestOrganizationNamesAreEmployerNames(t *testing.T) {
	in := []byte(`{"resourceType":"Organization","id":"org-1","active":true,"name":"Zorblatt Widgets Inc",
		"alias":["Zorblatt WI","ZWI Holdings"],"type":[{"text":"employer"}]}`)
	for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
		p, _, _ := newTestProcessor(t, preset(t, name))
		out, rep := run(t, p, in, false)
		require.Empty(t, rep.Errors, name)
		for _, planted := range []string{"Zorblatt", "ZWI Holdings"} {
			assert.NotContains(t, string(out), planted, name)
		}
		if name == PresetSafeHarbor {
			assert.NotContains(t, string(out), `"name"`, "safe_harbor removes the name")
			assert.Contains(t, string(out), "REDACTED")
			continue
		}
		assert.Contains(t, string(out), `"name"`, "limited_data_set keeps a token in its place")
		back, rep := run(t, p, out, true)
		require.Empty(t, rep.Errors)
		assert.JSONEq(t, string(in), string(back), "the limited data set's tokens reverse exactly")
	}
}

// Free text no other rule examines, where sources are known to write identifiers: an
// extension's string value, a claim's pre-authorization number, an onset written as
// text, the source system's URI. Safe Harbor removes them; the limited data set
// tokenizes the strings (reversibly) and removes the URI.
func TestFreeTextThatCarriesIdentifiers(t *testing.T) {
	for _, tc := range []struct{ in, planted string }{
		{`{"resourceType":"Patient","id":"a","extension":[{"url":"http://example.org/nickname","valueString":"Zorbie Zorblatt"}]}`, "Zorblatt"},
		{`{"resourceType":"Patient","id":"a","extension":[{"url":"http://example.org/note","valueMarkdown":"call **Zorblatt**"}]}`, "Zorblatt"},
		{`{"resourceType":"Patient","id":"a","extension":[{"url":"http://example.org/outer","extension":[{"url":"inner","valueString":"Zorblatt"}]}]}`, "Zorblatt"},
		{`{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/a"},"onsetString":"since Zorblatt's wedding 1953-07-21"}`, "Zorblatt"},
		{`{"resourceType":"Patient","id":"a","meta":{"source":"http://ehr.example.org/Zorblatt"}}`, "Zorblatt"},
	} {
		for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
			p, _, _ := newTestProcessor(t, preset(t, name))
			out, rep := run(t, p, []byte(tc.in), false)
			require.Empty(t, rep.Errors, "%s: %s", name, tc.in)
			assert.NotContains(t, string(out), tc.planted, "%s: %s", name, tc.in)
			if name == PresetLimitedDataSet && !strings.Contains(tc.in, "meta") {
				back, rep := run(t, p, out, true)
				require.Empty(t, rep.Errors)
				assert.JSONEq(t, tc.in, string(back), "the limited data set's tokens reverse")
			}
		}
	}
}

// The Bundle envelope is examined like a resource: the Bundle's and its entries' own
// elements pass only when FHIR defines them and no identifier can hide there (type,
// total, fullUrl, request method and url, response status and location, search mode and
// score); ids, extensions, "_element" siblings, narratives-that-are-not are dropped;
// anything else is refused (the Bundle) or fails its entry, naming it.
func TestBundleEnvelopeIsExamined(t *testing.T) {
	patient := `{"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","id":"aaaaaaaa-0000-4000-8000-000000000001","gender":"female"}`
	for _, tc := range []struct{ name, in, refused, entryPath string }{
		{"unknown Bundle element", `{"resourceType":"Bundle","type":"collection","zzbogus":"Zzfamily01","entry":[` + patient + `}]}`, "Bundle.zzbogus", ""},
		{"Bundle narrative", `{"resourceType":"Bundle","type":"collection","text":{"status":"generated","div":"<div>Zzfamily02</div>"},"entry":[` + patient + `}]}`, "Bundle.text", ""},
		{"Bundle extension", `{"resourceType":"Bundle","type":"collection","extension":[{"url":"http://x","valueString":"Zzfamily03"}],"entry":[` + patient + `}]}`, "Bundle.extension", ""},
		{"Bundle after entry", `{"resourceType":"Bundle","entry":[` + patient + `}],"type":"collection","zzafter":"Zzfamily04"}`, "Bundle.zzafter", ""},
		{"total not a number", `{"resourceType":"Bundle","type":"collection","total":"Zzfamily05","entry":[` + patient + `}]}`, "Bundle.total", ""},
		{"unknown entry element", `{"resourceType":"Bundle","type":"collection","entry":[` + patient + `,"zzbogus":"Zzfamily06"}]}`, "", "Bundle.entry.zzbogus"},
		{"unknown request element", `{"resourceType":"Bundle","type":"transaction","entry":[` + patient + `,"request":{"method":"POST","url":"Patient","zzreq":"Zzfamily07"}}]}`, "", "Bundle.entry.request.zzreq"},
		{"search URL as fullUrl", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"http://x/fhir/Patient?name=Zzfamily08","resource":{"resourceType":"Patient","id":"p8","gender":"female"}}]}`, "", "Bundle.entry.fullUrl"},
		{"search mode not a string", `{"resourceType":"Bundle","type":"searchset","entry":[` + patient + `,"search":{"mode":{"x":"Zzfamily09"}}}]}`, "", "Bundle.entry.search.mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
				p, _, _ := newTestProcessor(t, preset(t, name))
				var out bytes.Buffer
				rep, err := p.DeidentifyJSON(context.Background(), strings.NewReader(tc.in), &out)
				if tc.refused != "" {
					require.Error(t, err, name)
					assert.Contains(t, err.Error(), tc.refused)
					assert.NotContains(t, err.Error(), "Zzfamily")
					continue
				}
				require.NoError(t, err, name)
				require.Len(t, rep.Errors, 1, name)
				assert.Equal(t, tc.entryPath, rep.Errors[0].Path)
				assert.NotContains(t, out.String(), "Zzfamily", name)
				assert.NotContains(t, rep.Errors[0].Error(), "Zzfamily")
			}
		})
	}
	// What is dropped goes quietly; type, total, language and search mode/score pass.
	in := `{"resourceType":"Bundle","id":"bundle-Zzsecret","type":"searchset","total":1,"language":"en","implicitRules":"http://Zzrules",
		"_timestamp":{"extension":[{"url":"http://x","valueString":"Zzext"}]},
		"entry":[` + patient + `,"id":"Zzentryid","extension":[{"url":"http://x","valueString":"Zzentryext"}],
		"search":{"mode":"match","score":1,"extension":[{"url":"http://x","valueString":"Zzsearchext"}]}}]}`
	p, _, _ := newTestProcessor(t, preset(t, PresetSafeHarbor))
	out, rep := run(t, p, []byte(in), false)
	require.Empty(t, rep.Errors)
	assert.NotContains(t, string(out), "Zz")
	got := decodeJSON(t, out)
	assert.Equal(t, "searchset", got["type"])
	assert.EqualValues(t, "1", fmt.Sprint(got["total"]))
	assert.Equal(t, "en", got["language"])
	entry := got["entry"].([]any)[0].(map[string]any)
	assert.Equal(t, map[string]any{"mode": "match", "score": json.Number("1")}, entry["search"])
}

// Free text anywhere (the black-box review's list): no preset lets a string through that
// is not a code, an id or the vocabulary's own text. Safe Harbor removes it, the limited
// data set tokenizes it (and gives it back), URLs in extensions are removed by both.
func TestNoFreeTextPassesThrough(t *testing.T) {
	for _, in := range []string{
		`{"resourceType":"Patient","id":"a","modifierExtension":[{"url":"http://x","valueString":"Zzmodext"}]}`,
		`{"resourceType":"Patient","id":"a","extension":[{"url":"http://x","valueUri":"http://portal.example/Zzuri-MRN-1"},{"url":"http://y","valueUrl":"http://portal.example/Zzurl"},{"url":"http://z","valueCanonical":"http://portal.example/Zzcanon"}]}`,
		`{"resourceType":"Patient","id":"a","generalPractitioner":[{"reference":"Practitioner?identifier=Zzcondref"}]}`,
		`{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/a"},"abatementString":"when Zzabate moved out"}`,
		`{"resourceType":"MedicationRequest","id":"m","status":"active","intent":"order","subject":{"reference":"Patient/a"},"medicationCodeableConcept":{"text":"x"},"dosageInstruction":[{"patientInstruction":"ask Zzinstr","text":"call Zzdosage"}]}`,
		`{"resourceType":"Immunization","id":"i","status":"completed","vaccineCode":{"text":"flu"},"patient":{"reference":"Patient/a"},"occurrenceString":"Zzoccur fair","protocolApplied":[{"series":"Zzseries","doseNumberString":"Zzdose","seriesDosesString":"Zzdoses"}]}`,
		`{"resourceType":"Claim","id":"cl","status":"active","type":{"text":"x"},"use":"claim","patient":{"reference":"Patient/a"},"created":"2020-01-01","provider":{"reference":"Organization/o"},"priority":{"text":"n"},"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/c"},"businessArrangement":"Zzbiz","preAuthRef":["Zzpreauth"]}]}`,
		`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"bp"},"subject":{"reference":"Patient/a"},"component":[{"code":{"text":"note"},"valueString":"Zzcompval"}],"referenceRange":[{"text":"Zzrange"}],"valueString":"Zzvalstr"}`,
		`{"resourceType":"DiagnosticReport","id":"d","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/a"},"media":[{"comment":"Zzmedia","link":{"reference":"Media/m"}}]}`,
	} {
		for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
			p, _, _ := newTestProcessor(t, preset(t, name))
			out, rep := run(t, p, []byte(in), false)
			assert.NotContains(t, string(out), "Zz", "%s: %s", name, in)
			for _, e := range rep.Errors {
				assert.NotContains(t, e.Error(), "Zz")
			}
			if name == PresetLimitedDataSet && len(rep.Errors) == 0 && !strings.Contains(in, "valueU") && !strings.Contains(in, "valueCanonical") {
				back, rep := run(t, p, out, true)
				require.Empty(t, rep.Errors, in)
				assert.JSONEq(t, in, string(back), "the limited data set gives free text back")
			}
		}
	}
}

// Two Patient entries with one fullUrl (FHIR bdl-7): the later fails, and references by
// that fullUrl keep naming the first patient, whose date shift they take.
func TestDuplicatePatientFullUrlFails(t *testing.T) {
	in := `{"resourceType":"Bundle","type":"collection","entry":[
	{"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","id":"p1","birthDate":"1970-01-01"}},
	{"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","id":"p2","birthDate":"1980-01-01"}},
	{"fullUrl":"urn:uuid:bbbbbbbb-0000-4000-8000-000000000001","resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},
	 "subject":{"reference":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"},"effectiveDateTime":"1970-01-01"}}]}`
	p, _, _ := newTestProcessor(t, preset(t, PresetLimitedDataSet))
	out, rep := run(t, p, []byte(in), false)
	require.Len(t, rep.Errors, 1)
	assert.Equal(t, 1, rep.Errors[0].Index)
	assert.Equal(t, "Bundle.entry.fullUrl", rep.Errors[0].Path)
	got := decodeJSON(t, out)
	entries := got["entry"].([]any)
	require.Len(t, entries, 2)
	birth := entries[0].(map[string]any)["resource"].(map[string]any)["birthDate"]
	effective := entries[1].(map[string]any)["resource"].(map[string]any)["effectiveDateTime"]
	assert.Equal(t, birth, effective, "the Observation shifted with the first patient")
}
