package fhir

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
)

func TestProfileErrorsNameRuleAndProblem(t *testing.T) {
	unknownClass := func(c string) error {
		if c == "nope" {
			return errors.New("no such class")
		}
		return nil
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown action", `{name: p, rules: [{path: Patient.name, action: scramble}]}`, `rule 0: unknown action "scramble"`},
		{"missing class", `{name: p, rules: [{path: Patient.name, action: keep}, {path: Patient.name, action: tokenize}]}`, "rule 1: action tokenize needs a class"},
		{"class on keep", `{name: p, rules: [{path: Patient.name, action: keep, class: x}]}`, "rule 0: action keep takes no class"},
		{"subject on redact", `{name: p, rules: [{path: Patient.name, action: redact, subject: patient}]}`, `rule 0: subject "patient": only "patient", and only with action tokenize`},
		{"unknown subject", `{name: p, rules: [{path: Patient.name, action: tokenize, class: name, subject: household}]}`, `rule 0: subject "household": only "patient"`},
		{"unknown class", `{name: p, rules: [{path: Patient.name, action: tokenize, class: nope}]}`, `rule 0: class "nope": no such class`},
		{"unknown element", `{name: p, rules: [{path: Patient.nmae, action: redact}]}`, `rule 0: path "Patient.nmae": Patient has no element "nmae"`},
		{"unknown root", `{name: p, rules: [{path: Patientt.name, action: redact}]}`, `rule 0: path "Patientt.name": root "Patientt" is not a supported resource type`},
		{"unknown function", `{name: p, rules: [{path: "Patient.name.first()", action: redact}]}`, "rule 0: function first() is not in the supported subset"},
		{"unknown type", `{name: p, rules: [{path: "descendants().ofType(Humanname)", action: redact}]}`, "rule 0: ofType(Humanname): unknown type"},
		{"bad where", `{name: p, rules: [{path: "Patient.telecom.where(system != 'x')", action: redact}]}`, "rule 0: where(system != 'x'): only where(element = 'literal') is supported"},
		{"unbalanced", `{name: p, rules: [{path: "Patient.telecom.where(system = 'x'", action: redact}]}`, "unbalanced parentheses or quotes"},
		{"empty path", `{name: p, rules: [{action: redact}]}`, "rule 0: path is required"},
		{"default with path", `{name: p, default: {path: Patient.name, action: redact}}`, "default: takes no path"},
		{"bad zip table", `{name: p, zip3_table: census-1990}`, `unknown zip3_table "census-1990"`},
		{"bad zip", `{name: p, restricted_zip3: ["12"]}`, `restricted_zip3: "12" is not three digits`},
		{"ids type", `{name: p, ids: {class: fhir_id, types: [Patiente]}}`, `ids: "Patiente" is not a supported resource type`},
		{"bad name", `{name: "a b", rules: []}`, "name must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProfile([]byte(tc.yaml), unknownClass)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, errs.InvalidArgument, errs.KindOf(err))
		})
	}
	_, err := ParseProfiles([]byte("profiles:\n  - {name: ok}\n  - {name: bad, rules: [{path: Patient.x, action: keep}]}\n"), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `profiles[1]: profile "bad": rule 0: path "Patient.x"`)
	_, err = ParseProfiles([]byte("profiles: [ {name: secretvalue123, rules: 5 ]"), nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "secretvalue123")
}

func TestRegistry(t *testing.T) {
	custom := customProfile(t, researchProfile)
	r, err := NewRegistry([]*Profile{custom}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"limited_data_set", "research", "safe_harbor"}, r.Names())
	_, err = r.Lookup("research")
	require.NoError(t, err)
	_, err = r.Lookup("hipaa")
	require.Error(t, err)
	assert.Equal(t, errs.InvalidArgument, errs.KindOf(err))
	assert.Contains(t, err.Error(), `unknown profile "hipaa"`)
	_, err = NewRegistry([]*Profile{preset(t, PresetSafeHarbor)}, nil)
	assert.ErrorContains(t, err, "name already used")
	assert.Equal(t, []string{"fhir_address", "fhir_id", "fhir_identifier", "fhir_name", "fhir_telecom", "fhir_text"}, preset(t, PresetLimitedDataSet).Classes())
}

func TestBadInputGivesClearErrors(t *testing.T) {
	p, tok, _ := newTestProcessor(t, preset(t, PresetLimitedDataSet))
	ctx := context.Background()
	deid := func(in string) (*Report, error) {
		var out bytes.Buffer
		return p.DeidentifyJSON(ctx, strings.NewReader(in), &out)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"malformed", `{"resourceType":"Patient","name":[{"family":"Secretname"}`, "malformed JSON"},
		{"garbage", `Secretname`, "malformed JSON at byte"},
		{"array", `[1,2]`, "not a FHIR resource: not a JSON object"},
		{"two values", `{"resourceType":"Patient"} {}`, "more than one value"},
		{"entry outside bundle", `{"resourceType":"Patient","entry":[]}`, "entry is only allowed in a Bundle"},
		{"entry not array", `{"resourceType":"Bundle","entry":{}}`, "Bundle.entry is not an array"},
		{"broken entry", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"a"}}, {"resource": Secretname}]}`, "Bundle.entry[1]: malformed JSON at byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deid(tc.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "Secretname")
			assert.Equal(t, errs.InvalidArgument, errs.KindOf(err))
		})
	}
	for _, tc := range []struct{ name, in, want string }{
		{"non-FHIR object", `{"name":"Secretname"}`, "not a FHIR resource: no resourceType"},
		{"unsupported type", `{"resourceType":"Secretname"}`, "unsupported resource type"},
		{"bad date", `{"resourceType":"Patient","id":"p","birthDate":"1990-02-30"}`, "date shift: not a valid FHIR date"},
		{"no subject for dates", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2020-01-01"}`, "date shift needs the patient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := deid(tc.in)
			require.NoError(t, err)
			require.Len(t, rep.Errors, 1)
			assert.Contains(t, rep.Errors[0].Reason, tc.want)
			assert.NotContains(t, rep.Errors[0].Error(), "1990-02-30")
			assert.NotContains(t, rep.Errors[0].Error(), "Secretname")
			assert.Zero(t, rep.Resources)
		})
	}
	rep, err := deid(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2020-01-01"}`)
	require.NoError(t, err)
	assert.Equal(t, "Observation.effective", rep.Errors[0].Path)

	// A value the token service refuses fails only its own resource.
	tok.failOn = "Failname"
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[
	  {"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","id":"aaaaaaaa-0000-4000-8000-000000000001","name":[{"family":"Failname"}]}},
	  {"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000002","resource":{"resourceType":"Patient","id":"aaaaaaaa-0000-4000-8000-000000000002","name":[{"family":"Goodname"}]}},
	  {"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000003","resource":{"resourceType":"Unknownish"}},
	  {"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000004"}]}`
	var out bytes.Buffer
	rep, err = p.DeidentifyJSON(ctx, strings.NewReader(bundle), &out)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Resources)
	require.Len(t, rep.Errors, 3)
	assert.Equal(t, ResourceError{Index: 0, ResourceType: "Patient", Path: "Patient.name[0].family", Reason: "class fhir_name: value does not fit the class format"}, rep.Errors[0])
	assert.Equal(t, 2, rep.Errors[1].Index)
	assert.Equal(t, "entry has no resource", rep.Errors[2].Reason)
	got := decodeJSON(t, out.Bytes())
	assert.Len(t, got["entry"], 1)
	assert.NotContains(t, out.String(), "Failname")
	assert.NotContains(t, out.String(), "Goodname")
}

func TestNDJSONBadLineFailsAlone(t *testing.T) {
	p, _, _ := newTestProcessor(t, preset(t, PresetLimitedDataSet))
	in := `{"resourceType":"Patient","id":"p1","name":[{"family":"Onename"}]}
{"resourceType":"Patient", Secretname
{"resourceType":"Patient","id":"p2","name":[{"family":"Twoname"}]}

{"id":"x"}
`
	var out bytes.Buffer
	rep, err := p.DeidentifyNDJSON(context.Background(), strings.NewReader(in), &out)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Resources)
	require.Len(t, rep.Errors, 2)
	assert.Equal(t, 1, rep.Errors[0].Index)
	assert.Contains(t, rep.Errors[0].Reason, "malformed JSON")
	assert.Equal(t, 4, rep.Errors[1].Index)
	assert.Equal(t, 2, strings.Count(out.String(), "\n"))
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		assert.True(t, strings.HasPrefix(l, `{"resourceType":"Patient",`), "resourceType first")
	}
	for _, s := range []string{"Onename", "Twoname", "Secretname"} {
		assert.NotContains(t, out.String(), s)
		assert.NotContains(t, rep.Errors[0].Error(), s)
	}
}

func TestGeneralizeMaskAndDefault(t *testing.T) {
	bundle, _ := testBundle(t)
	p, _, _ := newTestProcessor(t, customProfile(t, generalizeProfile))
	out, rep := run(t, p, mustJSON(t, bundle), false)
	require.Empty(t, rep.Errors)
	validateFHIR(t, out)
	res := resources(t, decodeJSON(t, out))
	pat1, pat3 := res[2], res[20]
	assert.Equal(t, "021", pat1["address"].([]any)[0].(map[string]any)["postalCode"])
	assert.Equal(t, "MA", pat1["address"].([]any)[0].(map[string]any)["state"])
	assert.NotContains(t, pat1["address"].([]any)[0], "line", "default redacts the unmatched rest of an Address")
	assert.Equal(t, "000", pat3["address"].([]any)[0].(map[string]any)["postalCode"], "036 is restricted in this table too")
	assert.Equal(t, "1978", pat1["birthDate"])
	assert.NotContains(t, pat3, "birthDate")
	tel := pat1["telecom"].([]any)
	assert.Equal(t, "***-***-1001", tel[0].(map[string]any)["value"])
	ids := pat1["identifier"].([]any)
	assert.Len(t, ids, 1, "only the masked SSN identifier stays; the default redacts the others")
	assert.Equal(t, "***-**-6781", ids[0].(map[string]any)["value"])
	assert.ElementsMatch(t, []string{LabelPseudonymized, LabelRedacted, LabelMasked, LabelAbstracted}, labels(pat1))
	assert.Equal(t, ">=", res[24]["onsetAge"].(map[string]any)["comparator"])
	assert.NotContains(t, res[3], "identifier", "Encounter is not mentioned: its Identifier gets the default")

	// The same profile with a tokenize default: unmatched identifying types are
	// tokenized (strings) and shifted (dates), and come back.
	p2, tok, _ := newTestProcessor(t, customProfile(t, researchProfile))
	out2, _ := run(t, p2, mustJSON(t, bundle), false)
	imm := resources(t, decodeJSON(t, out2))[8]
	assert.Equal(t, "Immunization", imm["resourceType"])
	v := imm["identifier"].([]any)[0].(map[string]any)["value"].(string)
	assert.NotEqual(t, "IMM-ACCT-1", v)
	assert.Equal(t, "IMM-ACCT-1", tok.rev[[2]string{"fhir_text", v}], "Immunization.identifier got the default action (tokenize, class fhir_text)")
}
