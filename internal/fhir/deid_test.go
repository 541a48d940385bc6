package fhir

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testNow = func() time.Time { return time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) }

func newTestProcessor(t testing.TB, prof *Profile) (*Processor, *memTokenizer, *MemoryOffsets) {
	t.Helper()
	offs, err := NewMemoryOffsets(365)
	require.NoError(t, err)
	tok := newMemTokenizer()
	return NewProcessor(prof, tok, offs, testNow), tok, offs
}

func preset(t testing.TB, name string) *Profile {
	t.Helper()
	p, err := Preset(name, nil)
	require.NoError(t, err)
	return p
}

func run(t testing.TB, p *Processor, in []byte, reverse bool) ([]byte, *Report) {
	t.Helper()
	var out bytes.Buffer
	var rep *Report
	var err error
	if reverse {
		rep, err = p.ReidentifyJSON(context.Background(), bytes.NewReader(in), &out)
	} else {
		rep, err = p.DeidentifyJSON(context.Background(), bytes.NewReader(in), &out)
	}
	require.NoError(t, err)
	return out.Bytes(), rep
}

// validateFHIR runs the npm fhir package's validator on a Bundle (make fhir-validator
// installs it).
func validateFHIR(t *testing.T, bundle []byte) {
	t.Helper()
	dir, err := filepath.Abs("../../tools/fhir-validate")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "node_modules", "fhir"))
	require.NoError(t, err, "the FHIR validator is not installed: run `make fhir-validator` (make test does)")
	file := filepath.Join(t.TempDir(), "bundle.json")
	require.NoError(t, os.WriteFile(file, bundle, 0o600))
	out, err := exec.Command("node", filepath.Join(dir, "validate-bundle.js"), file).CombinedOutput()
	require.NoError(t, err, "FHIR validation failed:\n%s", out)
	assert.Contains(t, string(out), "valid:")
}

// assertReferencesResolve checks that every literal reference in a Bundle names an entry
// (by fullUrl, by Type/id against an entry's fullUrl, or a contained resource).
func assertReferencesResolve(t *testing.T, bundle map[string]any) {
	t.Helper()
	full := map[string]bool{}
	entries := bundle["entry"].([]any)
	for _, e := range entries {
		full[e.(map[string]any)["fullUrl"].(string)] = true
	}
	n := 0
	for i, e := range entries {
		res := e.(map[string]any)["resource"].(map[string]any)
		fu := e.(map[string]any)["fullUrl"].(string)
		id, _ := res["id"].(string)
		assert.True(t, strings.HasSuffix(fu, ":"+id) || strings.HasSuffix(fu, "/"+res["resourceType"].(string)+"/"+id),
			"entry %d: fullUrl and Resource.id map to the same token", i)
		contained := map[string]bool{}
		for _, c := range asList(res["contained"]) {
			contained["#"+c.(map[string]any)["id"].(string)] = true
		}
		walkJSON(res, func(k string, v any) {
			s, ok := v.(string)
			if k != "reference" || !ok {
				return
			}
			n++
			switch {
			case strings.HasPrefix(s, "#"):
				assert.True(t, contained[s], "entry %d: contained reference %s", i, s)
			case full[s]:
			default:
				found := false
				for u := range full {
					found = found || strings.HasSuffix(u, "/"+s)
				}
				assert.True(t, found, "entry %d: reference %s resolves to no entry", i, s)
			}
		})
	}
	assert.Greater(t, n, 30, "the Bundle has references")
}

func asList(v any) []any { l, _ := v.([]any); return l }

func walkJSON(v any, f func(k string, v any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			f(k, c)
			walkJSON(c, f)
		}
	case []any:
		for _, c := range x {
			walkJSON(c, f)
		}
	}
}

func plantedAll() []string {
	var out []string
	for _, p := range testPatients {
		out = append(out, planted(p.n)...)
		out = append(out, p.id)
	}
	return append(out, "Containedson1", "Plantedoc")
}

func assertAbsent(t *testing.T, out []byte, strs []string) {
	t.Helper()
	for _, s := range strs {
		assert.False(t, bytes.Contains(out, []byte(s)), "planted value %q survived", s)
	}
}

func resources(t *testing.T, bundle map[string]any) []map[string]any {
	var out []map[string]any
	for _, e := range bundle["entry"].([]any) {
		out = append(out, e.(map[string]any)["resource"].(map[string]any))
	}
	return out
}

func labels(res map[string]any) []string {
	var out []string
	meta, _ := res["meta"].(map[string]any)
	for _, c := range asList(meta["security"]) {
		out = append(out, c.(map[string]any)["code"].(string))
	}
	return out
}

var fullDate = regexp.MustCompile(`"[0-9]{4}-[0-9]{2}`)

func TestSafeHarborBundle(t *testing.T) {
	bundle, dates := testBundle(t)
	in := mustJSON(t, bundle)
	p, tok, _ := newTestProcessor(t, preset(t, PresetSafeHarbor))
	out, rep := run(t, p, in, false)
	require.Empty(t, rep.Errors)
	assert.Equal(t, 29, rep.Resources)
	validateFHIR(t, out)
	assertAbsent(t, out, plantedAll())
	assertAbsent(t, out, dates)
	assertAbsent(t, out, []string{"Plantcity1", "02139", "10001", "03601", "Maidenbury"})
	assert.Empty(t, fullDate.FindAll(out, -1), "Safe Harbor keeps years only")
	got := decodeJSON(t, out)
	assertReferencesResolve(t, got)
	assert.Equal(t, []string{"fhir_id"}, tok.classesSeen(), "only ids were tokenized")
	byType := map[string][]map[string]any{}
	for _, r := range resources(t, got) {
		byType[r["resourceType"].(string)] = append(byType[r["resourceType"].(string)], r)
		assert.Contains(t, labels(r), LabelPseudonymized, r["resourceType"])
	}
	pats := byType["Patient"]
	require.Len(t, pats, 3)
	assert.Equal(t, "1978", pats[0]["birthDate"])
	assert.Equal(t, "1950", pats[1]["birthDate"])
	assert.NotContains(t, pats[2], "birthDate", "a birth date implying age over 89 is removed")
	assert.Equal(t, []any{map[string]any{"state": "MA", "postalCode": "021", "country": "US"}}, pats[0]["address"])
	assert.Equal(t, "100", pats[1]["address"].([]any)[0].(map[string]any)["postalCode"])
	assert.Equal(t, "000", pats[2]["address"].([]any)[0].(map[string]any)["postalCode"], "036 is a restricted ZIP3")
	for _, k := range []string{"name", "telecom", "identifier"} {
		assert.NotContains(t, pats[0], k)
	}
	assert.ElementsMatch(t, []string{LabelPseudonymized, LabelRedacted, LabelAbstracted}, labels(pats[0]))
	old := byType["Condition"][2]["onsetAge"].(map[string]any)
	assert.Equal(t, ">=", old["comparator"])
	assert.Equal(t, "90", string(old["value"].(jsonNumber)))
	assert.Equal(t, "2014", byType["Encounter"][0]["period"].(map[string]any)["start"])
	assert.NotContains(t, byType["Observation"][0], "issued", "instants cannot keep only a year")
}
