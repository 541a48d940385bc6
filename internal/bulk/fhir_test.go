package bulk_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fhirPatient is what one generated patient plants: every value must leave the
// de-identified output and come back on re-identification.
type fhirPatient struct {
	id, family, given, ssn, phone, line, birth, visit string
}

// fhirNDJSON makes FHIR Bulk Data NDJSON: for each patient a Patient, an Encounter and
// two Observations that reference it, with names (Unicode), an SSN, a phone, a street
// line and dates of every precision.
func fhirNDJSON(patients int, seed uint64) ([]byte, []fhirPatient) {
	r := rand.New(rand.NewPCG(seed, 3))
	var b bytes.Buffer
	var planted []fhirPatient
	for i := range patients {
		p := fhirPatient{
			id:     fmt.Sprintf("pat-%05d-%s", i, word(r, 4)),
			family: "Fam" + word(r, 6) + []string{"ñez", "ö", "ß"}[i%3],
			given:  "Giv" + word(r, 5),
			ssn:    ssn(r),
			phone:  fmt.Sprintf("617-555-%04d", r.IntN(10000)),
			line:   fmt.Sprintf("%d Zed%s Street", 10+r.IntN(900), word(r, 5)),
			birth:  fmt.Sprintf("19%02d-%02d-%02d", 30+r.IntN(60), 1+r.IntN(12), 1+r.IntN(28)),
			visit:  fmt.Sprintf("2019-%02d-%02dT%02d:%02d:17.25+02:00", 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60)),
		}
		planted = append(planted, p)
		fmt.Fprintf(&b, `{"resourceType":"Patient","id":%q,"identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":%q}],`+
			`"name":[{"use":"official","family":%q,"given":[%q]}],"telecom":[{"system":"phone","value":%q}],"gender":"female",`+
			`"birthDate":%q,"address":[{"line":[%q],"city":"Boston","state":"MA","postalCode":"02139"}]}`+"\n",
			p.id, p.ssn, p.family, p.given, p.phone, p.birth, p.line)
		fmt.Fprintf(&b, `{"resourceType":"Encounter","id":"enc-%d","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},`+
			`"subject":{"reference":"Patient/%s"},"period":{"start":%q,"end":"2019-12"}}`+"\n", i, p.id, p.visit)
		for k := range 2 {
			fmt.Fprintf(&b, `{"resourceType":"Observation","id":"obs-%d-%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},`+
				`"subject":{"reference":"Patient/%s"},"encounter":{"reference":"Encounter/enc-%d"},"effectiveDateTime":%q,`+
				`"valueQuantity":{"value":%d.5,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}}`+"\n",
				i, k, p.id, i, []string{p.visit, "2019"}[k], 150+r.IntN(40))
		}
	}
	return b.Bytes(), planted
}

func plantedStrings(ps []fhirPatient) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.id, p.family, p.given, p.ssn, p.phone, p.line, p.birth, p.visit[:16])
	}
	return out
}

// TestFHIRNDJSONFiles de-identifies FHIR NDJSON with each preset through the running
// service and re-identifies the limited data set exactly; a bad line is a reject with
// its line number and path, never its content.
func TestFHIRNDJSONFiles(t *testing.T) {
	s := startService(t)
	dir := t.TempDir()
	data, planted := fhirNDJSON(60, 1)
	in := filepath.Join(dir, "export.ndjson.gz")
	compressTo(t, in, data)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")

	for _, profile := range []string{"safe_harbor", "limited_data_set"} {
		out := filepath.Join(dir, profile+".ndjson")
		res := s.client(t, "tokenize-file", "--input", in, "--output", out, "--profile", profile, "--batch", "25", "--progress", "none")
		require.Equal(t, 0, res.code, res.stderr)
		assert.Contains(t, res.stderr, fmt.Sprintf("rows=%d", len(lines)))
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		outLines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
		require.Len(t, outLines, len(lines), "one resource per line, none lost")
		for i, l := range outLines {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &m), "line %d is one JSON resource", i+1)
			var orig map[string]any
			require.NoError(t, json.Unmarshal([]byte(lines[i]), &orig))
			assert.Equal(t, orig["resourceType"], m["resourceType"], "line %d keeps its place", i+1)
			assert.Contains(t, l, `"security"`, "line %d is labelled", i+1)
		}
		// Each patient's values are looked for in that patient's four lines: a shifted
		// date may by chance be another patient's real one.
		for i, p := range planted {
			own := strings.Join(outLines[4*i:4*i+4], "\n")
			for _, v := range plantedStrings([]fhirPatient{p}) {
				assert.NotContains(t, own, v, "%s: planted %q left the service", profile, v)
			}
		}
		if profile == "safe_harbor" {
			continue
		}
		back := filepath.Join(dir, "back.ndjson")
		res = s.client(t, "detokenize-file", "--input", out, "--output", back, "--profile", profile, "--purpose", "TREAT", "--progress", "none")
		require.Equal(t, 0, res.code, res.stderr)
		restored, err := os.ReadFile(back)
		require.NoError(t, err)
		backLines := strings.Split(strings.TrimSuffix(string(restored), "\n"), "\n")
		require.Len(t, backLines, len(lines))
		for i := range lines {
			assert.JSONEq(t, lines[i], backLines[i], "line %d round trips exactly", i+1)
		}
	}

	// Bad lines are rejects (line number, path or type, reason; never the content); a
	// blank line stays blank; the job goes on and exits 3.
	bad := lines[0] + "\n" + `{"resourceType":"Patient","id":"x","birthdate":"1953-07-21","name":[{"family":"Qwertyfam"}]}` + "\n\n" +
		`{"resourceType":"RelatedPerson","id":"rp","name":[{"family":"Qwertyfam"}]}` + "\n" + `{"resourceType":"Patient",` + "\n" + lines[1] + "\n"
	badIn := filepath.Join(dir, "bad.ndjson")
	require.NoError(t, os.WriteFile(badIn, []byte(bad), 0o600))
	out := filepath.Join(dir, "bad.out.ndjson")
	res := s.client(t, "tokenize-file", "--input", badIn, "--output", out, "--profile", "limited_data_set", "--progress", "none")
	require.Equal(t, 3, res.code, res.stderr)
	rej, err := os.ReadFile(out + ".rejects.csv")
	require.NoError(t, err)
	rejLines := strings.Split(strings.TrimSpace(string(rej)), "\n")
	require.Len(t, rejLines, 4, string(rej))
	assert.True(t, strings.HasPrefix(rejLines[1], "2,Patient.birthdate,"), rejLines[1])
	assert.True(t, strings.HasPrefix(rejLines[2], "4,"), rejLines[2])
	assert.True(t, strings.HasPrefix(rejLines[3], "5,"), rejLines[3])
	for _, v := range []string{"Qwertyfam", "1953"} {
		assert.NotContains(t, string(rej), v)
		assert.NotContains(t, res.stderr, v)
	}
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, 3, strings.Count(string(got), "\n"), "two resources, the blank line, nothing of the rejects:\n%s", got)
	assert.Contains(t, string(got), "}\n\n{", "the blank line stays")

	// A resource over the service's message limit is a reject, not the end of the job.
	huge := `{"resourceType":"Patient","id":"huge","name":[{"family":"` + strings.Repeat("Q", 5<<20) + `"}]}`
	hugeIn := filepath.Join(dir, "huge.ndjson")
	require.NoError(t, os.WriteFile(hugeIn, []byte(lines[0]+"\n"+huge+"\n"+lines[1]+"\n"), 0o600))
	res = s.client(t, "tokenize-file", "--input", hugeIn, "--output", out, "--profile", "limited_data_set", "--progress", "none")
	require.Equal(t, 3, res.code, res.stderr)
	rej, err = os.ReadFile(out + ".rejects.csv")
	require.NoError(t, err)
	assert.Contains(t, string(rej), "2,resource,the resource is larger than the service's message limit")
	got, err = os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(got), "\n"), "the two other resources")

	// Usage: a profile is required; columns do not apply.
	res = s.client(t, "tokenize-file", "--input", badIn, "--output", out, "--format", "fhir-ndjson", "--progress", "none")
	assert.Equal(t, 1, res.code, res.stderr)
	assert.Contains(t, res.stderr, "profile: required")
	res = s.client(t, "tokenize-file", "--input", badIn, "--output", out, "--profile", "no_such_profile", "--progress", "none")
	assert.Equal(t, 1, res.code, res.stderr)
	assert.Contains(t, res.stderr, "profile")
}

// TestFHIRNDJSONResume kills a FHIR NDJSON job mid-file and resumes it: the output is
// byte-identical to an uninterrupted run (static tokens, stored per-patient offsets).
func TestFHIRNDJSONResume(t *testing.T) {
	s := startService(t)
	dir := t.TempDir()
	data, _ := fhirNDJSON(500, 2)
	in := filepath.Join(dir, "in.ndjson")
	require.NoError(t, os.WriteFile(in, data, 0o600))
	args := []string{"--profile", "limited_data_set", "--batch", "50", "--concurrency", "2", "--checkpoint-rows", "200", "--progress", "none"}
	whole := filepath.Join(dir, "whole.ndjson.zst")
	res := s.client(t, append([]string{"tokenize-file", "--input", in, "--output", whole}, args...)...)
	require.Equal(t, 0, res.code, res.stderr)
	out := filepath.Join(dir, "killed.ndjson.zst")
	s.killMidJob(t, append([]string{"tokenize-file", "--input", in, "--output", out}, args...), out, 2000, 300*time.Millisecond)
	res = s.client(t, append([]string{"tokenize-file", "--input", in, "--output", out, "--resume"}, args...)...)
	require.Equal(t, 0, res.code, res.stderr)
	a, b := decompress(t, whole), decompress(t, out)
	assert.Equal(t, 2000, bytes.Count(b, []byte("\n")), "no resource lost or duplicated")
	assert.True(t, bytes.Equal(a, b), "resumed output is identical to the uninterrupted one")
}
