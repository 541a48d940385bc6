package fhir

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPathsAgreeWithFHIRPathJS checks, for every path of the presets and the test
// profiles and every resource of the test Bundle, that this package selects exactly the
// nodes HL7's fhirpath package selects (tools/fhir-validate/fhirpath-select.js).
func TestPathsAgreeWithFHIRPathJS(t *testing.T) {
	dir, err := filepath.Abs("../../tools/fhir-validate")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "node_modules", "fhirpath"))
	require.NoError(t, err, "the fhirpath package is not installed: run `make fhir-validator` (make test does)")

	var paths []string
	for _, prof := range []*Profile{preset(t, PresetSafeHarbor), preset(t, PresetLimitedDataSet), customProfile(t, researchProfile), customProfile(t, generalizeProfile)} {
		for _, r := range prof.rules {
			paths = append(paths, r.path.String())
		}
	}
	paths = append(paths, extraPaths...)
	bundle, _ := testBundle(t)
	type tcase struct {
		Resource map[string]any `json:"resource"`
		Paths    []string       `json:"paths"`
	}
	var cases []tcase
	for _, r := range resources(t, bundle) {
		cases = append(cases, tcase{r, paths})
	}
	file := filepath.Join(t.TempDir(), "cases.json")
	b, err := json.Marshal(map[string]any{"cases": cases})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, b, 0o600))
	out, err := exec.Command("node", filepath.Join(dir, "fhirpath-select.js"), file).Output()
	require.NoError(t, err, "fhirpath-select.js: %s", errText(err))
	var want [][][]string
	require.NoError(t, json.Unmarshal(out, &want))
	require.Len(t, want, len(cases))

	selected := 0
	var mismatches []string
	for i, c := range cases {
		for j, src := range paths {
			p, err := ParsePath(src)
			require.NoError(t, err, src)
			got := locations(p.eval(rootNode(c.Resource)))
			exp := want[i][j]
			if exp == nil {
				exp = []string{}
			}
			if !assert.ObjectsAreEqual(exp, got) {
				mismatches = append(mismatches, fmt.Sprintf("%s on %s: fhirpath %v, ours %v", src, c.Resource["resourceType"], exp, got))
			}
			selected += len(got)
		}
	}
	assert.Empty(t, mismatches[:min(len(mismatches), 15)], "%d disagreements", len(mismatches))
	assert.Greater(t, selected, 500, "the paths select something")
}

// extraPaths exercise the subset beyond the profiles' paths.
var extraPaths = []string{
	"Patient.name.given",
	"Patient.telecom.where(system='phone')",
	"Patient.contact.name.family",
	"Observation.component.value.ofType(Quantity).value",
	"Observation.value",
	"Condition.onset",
	"Condition.onset.ofType(Age)",
	"MedicationRequest.contained.ofType(Practitioner).name",
	"MedicationRequest.dosageInstruction.timing.repeat.bounds.ofType(Period).start",
	"Claim.insurance.identifier.value",
	"Resource.id",
	"descendants().ofType(string)",
	"descendants().ofType(code)",
	"descendants().ofType(uri)",
	"descendants().ofType(Coding).where(system = 'http://loinc.org').code",
	"nodesByType('Reference')",
	"Encounter.descendants()",
	"descendants()",
}

func locations(ns []*node) []string {
	set := map[string]bool{}
	for _, n := range ns {
		set[n.location()] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func errText(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

const generalizeProfile = `
name: coarse
ids: {class: fhir_id, types: ["*"]}
zip3_table: fhir-anonymizer-sample
default: {action: redact}
rules:
  - {path: "Patient.address.postalCode", action: generalize}
  - {path: "Patient.birthDate", action: generalize}
  - {path: "Condition.onset.ofType(Age)", action: generalize}
  - {path: "Patient.telecom.value", action: mask, class: phone}
  - {path: "Patient.identifier.where(system = 'http://hl7.org/fhir/sid/us-ssn').value", action: mask, class: ssn}
  - {path: "Patient.address.state", action: keep}
  - {path: "descendants().ofType(dateTime)", action: generalize}
`
