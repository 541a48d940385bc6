package fhir

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"Patient.name", "Patient.telecom.where(system = 'phone').value", "nodesByType('HumanName')",
		"descendants().ofType(dateTime)", "Observation.value.ofType(Quantity)", "Resource.id", "a.(b", "where(x='')"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := ParsePath(src)
		if err != nil {
			return
		}
		res := map[string]any{"resourceType": "Patient", "id": "p", "name": []any{map[string]any{"family": "x"}}}
		p.eval(rootNode(res))
	})
}

// FuzzDeidentifyJSON checks that no input panics, and that an error or a per-resource
// error never quotes the planted marker.
func FuzzDeidentifyJSON(f *testing.F) {
	for _, s := range []string{`{"resourceType":"Patient","id":"p1","name":[{"family":"MARKER"}],"birthDate":"1990-01-01"}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","subject":{"reference":"Patient/1"},"effectiveDateTime":"2020"}}]}`,
		`{"resourceType":"MARKER"}`, `MARKER`, `{"resourceType":"Patient","birthDate":"MARKER"}`} {
		f.Add(s)
	}
	offs, _ := NewMemoryOffsets(30)
	p := NewProcessor(preset(f, PresetLimitedDataSet), newMemTokenizer(), offs, testNow)
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		rep, err := p.DeidentifyJSON(context.Background(), strings.NewReader(in), &out)
		if err != nil {
			if strings.Contains(err.Error(), "MARKER") {
				t.Fatalf("error quotes input: %v", err)
			}
			return
		}
		for _, e := range rep.Errors {
			if strings.Contains(e.Error(), "MARKER") {
				t.Fatalf("resource error quotes input: %v", e.Error())
			}
		}
	})
}
