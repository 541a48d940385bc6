package fhir

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A primitive's "_element" sibling (id and extensions) describes the original value: a
// patient-birthTime extension beside birthDate holds the exact date and time. Whatever
// changes the value drops it, in both presets; an untouched primitive keeps its own.
func TestPrimitiveExtensionsGoWithTheirValue(t *testing.T) {
	in := []byte(`{"resourceType":"Patient","id":"pe-1","gender":"female","_gender":{"id":"g1"},
		"birthDate":"1961-04-18","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1961-04-18T08:30:00-05:00"}]},
		"name":[{"family":"Rivera","given":["Ana","Luz"],"_given":[{"extension":[{"url":"http://example.org/ext","valueString":"Ana-Secret"}]},null]}]}`)
	for _, name := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
		t.Run(name, func(t *testing.T) {
			p, _, _ := newTestProcessor(t, preset(t, name))
			out, rep := run(t, p, in, false)
			require.Empty(t, rep.Errors)
			for _, planted := range []string{"1961-04-18", "08:30", "Ana-Secret", "Rivera", "birthTime"} {
				assert.NotContains(t, string(out), planted)
			}
			assert.Contains(t, string(out), `"_gender"`, "an untouched primitive keeps its extensions")
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
