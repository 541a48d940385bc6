package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// A small Synthea-shaped Bundle: a patient, an encounter and an observation linked by
// urn:uuid, with identifiers and dates that must not survive de-identification.
const fhirBundle = `{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:1b7c52a0-0d6f-4b3e-9c1a-5e7d2f0a1b01","resource":{"resourceType":"Patient","id":"1b7c52a0-0d6f-4b3e-9c1a-5e7d2f0a1b01",
 "identifier":[{"system":"http://hospital.example.org/mrn","value":"MRN-55501"}],
 "name":[{"use":"official","family":"Zyxwardson","given":["Quintavius"]}],
 "telecom":[{"system":"phone","value":"555-201-1001"},{"system":"email","value":"quintavius@example.com"}],
 "gender":"male","birthDate":"1978-03-14",
 "address":[{"line":["101 Planted Lane","Apt 17"],"city":"Plantcity","state":"MA","postalCode":"02139"}]}},
{"fullUrl":"urn:uuid:2c8d63b1-1e7f-4c4f-8d2b-6f8e3a1b2c02","resource":{"resourceType":"Encounter","id":"2c8d63b1-1e7f-4c4f-8d2b-6f8e3a1b2c02","status":"finished",
 "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
 "subject":{"reference":"urn:uuid:1b7c52a0-0d6f-4b3e-9c1a-5e7d2f0a1b01"},
 "period":{"start":"2019-06-01T09:30:00-04:00","end":"2019-06-01T10:05:12.250-04:00"}}},
{"fullUrl":"urn:uuid:3d9e74c2-2f80-4d5a-9e3c-7a9f4b2c3d03","resource":{"resourceType":"Observation","id":"3d9e74c2-2f80-4d5a-9e3c-7a9f4b2c3d03","status":"final",
 "code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},
 "subject":{"reference":"urn:uuid:1b7c52a0-0d6f-4b3e-9c1a-5e7d2f0a1b01"},
 "encounter":{"reference":"urn:uuid:2c8d63b1-1e7f-4c4f-8d2b-6f8e3a1b2c02"},
 "effectiveDateTime":"2019-06","issued":"2019-06-01T10:00:00.123Z","valueQuantity":{"value":5.40,"unit":"mmol/L"}}}]}`

var fhirPlanted = []string{"MRN-55501", "Zyxwardson", "Quintavius", "555-201-1001", "quintavius@example.com",
	"101 Planted Lane", "Apt 17", "1978-03-14", "2019-06-01T09:30:00", "1b7c52a0-0d6f-4b3e-9c1a-5e7d2f0a1b01"}

func fhirPost(t *testing.T, r *running, path, contentType, body string) (int, string, http.Header) {
	t.Helper()
	return fhirSend(t, r, "POST", path, contentType, "", body)
}

// fhirSend sends one request (no Content-Type or request id when ""), and returns the
// status, the body and the headers with the trailers.
func fhirSend(t *testing.T, r *running, method, path, contentType, requestID, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+r.addrs.HTTP+path, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for k, v := range resp.Trailer {
		resp.Header[k] = v
	}
	return resp.StatusCode, string(raw), resp.Header
}

// bundleOut is a de-identified Bundle's entries.
type bundleOut struct {
	Entry []struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
	} `json:"entry"`
}

func bundleEntries(t *testing.T, s string) bundleOut {
	t.Helper()
	var b bundleOut
	require.NoError(t, json.Unmarshal([]byte(s), &b))
	return b
}

func semantic(t *testing.T, s string) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal([]byte(s), &v))
	return v
}

// TestFHIRRoundTripOverREST: limited_data_set over the FHIR-native REST endpoints with
// the real engine and store: nothing planted survives, references still link, and
// re-identification gives the Bundle back exactly.
func TestFHIRRoundTripOverREST(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	code, out, hdr := fhirPost(t, r, "/v1/fhir/$de-identify?profile=limited_data_set", "application/fhir+json", fhirBundle)
	require.Equal(t, http.StatusOK, code, out)
	assert.Empty(t, hdr.Get("X-Tokenizer-Errors"))
	assert.Equal(t, "application/fhir+json", hdr.Get("Content-Type"))
	for _, p := range fhirPlanted {
		assert.NotContains(t, out, p)
	}
	b := bundleEntries(t, out)
	require.Len(t, b.Entry, 3)
	patientURL := b.Entry[0].FullURL
	assert.Equal(t, patientURL, b.Entry[1].Resource["subject"].(map[string]any)["reference"], "references still link")
	assert.Equal(t, patientURL, "urn:uuid:"+b.Entry[0].Resource["id"].(string))
	assert.Regexp(t, `^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, patientURL, "UUIDs stay UUIDs")
	// The output of the real engine is valid FHIR R4 (the validator knows no terminology
	// tables, so unknown codes from example bindings are tolerated, as in internal/fhir).
	file := filepath.Join(t.TempDir(), "deid.json")
	require.NoError(t, os.WriteFile(file, []byte(out), 0o600))
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	vout, err := exec.Command("node", filepath.Join(root, "tools", "fhir-validate", "validate-bundle.js"), file).CombinedOutput()
	require.NoError(t, err, "FHIR validation failed:\n%s", vout)

	again, _, _ := fhirPost(t, r, "/v1/fhir/$de-identify?profile=limited_data_set", "application/fhir+json", fhirBundle)
	_, out2, _ := fhirPost(t, r, "/v1/fhir/$de-identify?profile=limited_data_set", "application/fhir+json", fhirBundle)
	require.Equal(t, http.StatusOK, again)
	assert.Equal(t, semantic(t, out), semantic(t, out2), "the same patient: the same tokens and the same date shift")

	code, back, _ := fhirPost(t, r, "/v1/fhir/$re-identify?profile=limited_data_set&purpose_of_use=TREAT", "application/fhir+json", out)
	require.Equal(t, http.StatusOK, code, back)
	assert.Equal(t, semantic(t, fhirBundle), semantic(t, back), "re-identification is exact")

	// Over REST, what could not be restored is listed in a header, by index, path and reason.
	_, sh, _ := fhirPost(t, r, "/v1/fhir/$de-identify?profile=safe_harbor", "application/fhir+json", fhirBundle)
	code, _, hdr = fhirPost(t, r, "/v1/fhir/$re-identify?profile=safe_harbor&purpose_of_use=TREAT", "application/fhir+json", sh)
	require.Equal(t, http.StatusOK, code)
	assert.Regexp(t, `"path":"Bundle.entry\[\d+\]\.resource\.birthDate"`, hdr.Get("X-Tokenizer-Unrestored"), "the path names the entry")
	assert.NotContains(t, hdr.Get("X-Tokenizer-Unrestored"), "1978")

	code, body, _ := fhirPost(t, r, "/v1/fhir/$re-identify?profile=limited_data_set", "application/fhir+json", out)
	assert.Equal(t, http.StatusBadRequest, code, "a reveal needs a purpose of use")
	assert.Contains(t, body, "purpose_of_use")
	code, body, _ = fhirPost(t, r, "/v1/fhir/$de-identify?profile=nope", "application/fhir+json", fhirBundle)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, "OperationOutcome")

	conn, err := pgx.Connect(t.Context(), e.dbURL)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var items, digests int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT (body::json->>'items')::int, cardinality(token_digests) FROM audit_events
		WHERE operation = 'detokenize_resources' AND body::json->>'outcome' = 'OK' ORDER BY seq DESC LIMIT 1`).Scan(&items, &digests))
	assert.Equal(t, 3, items, "the event counts the resources")
	assert.Positive(t, digests, "and records the tokens revealed")
}

// TestFHIRDateShiftSurvivesRestart: a patient's offset is stored, so another process on
// the same database shifts the same patient by the same amount.
func TestFHIRDateShiftSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.start(t, true)
	patient := `{"resourceType":"Patient","id":"pat-7","birthDate":"1980-02-29","gender":"female"}`
	res, err := tokenizerv1.NewFhirServiceClient(first.conn).TokenizeResources(t.Context(), &tokenizerv1.TokenizeResourcesRequest{Profile: "limited_data_set", Resources: []string{patient}})
	require.NoError(t, err)
	require.Empty(t, res.Errors)
	first.stop(t)
	second := e.start(t, true)
	res2, err := tokenizerv1.NewFhirServiceClient(second.conn).TokenizeResources(t.Context(), &tokenizerv1.TokenizeResourcesRequest{Profile: "limited_data_set", Resources: []string{patient}})
	require.NoError(t, err)
	assert.Equal(t, semantic(t, res.Resources[0]), semantic(t, res2.Resources[0]))
	assert.NotContains(t, res.Resources[0], "1980-02-29")
}

// TestFHIRNDJSONStream: NDJSON lines go through the stream in batches; a bad line fails
// alone and is reported by index in the trailer; the gRPC unary call reports the same.
func TestFHIRNDJSONStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	var lines []string
	for i := range 300 {
		lines = append(lines, `{"resourceType":"Patient","id":"p`+strings.Repeat("x", i%5)+string(rune('a'+i%26))+`","gender":"other","name":[{"family":"Plantfamily"}]}`)
	}
	lines[123] = `{"resourceType":"Patient", not json`
	code, out, hdr := fhirPost(t, r, "/v1/fhir/$de-identify?profile=limited_data_set", "application/fhir+ndjson", strings.Join(lines, "\n"))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, 299, strings.Count(out, "\n"))
	assert.NotContains(t, out, "Plantfamily")
	assert.Contains(t, hdr.Get("X-Tokenizer-Errors"), `"index":123`)
	assert.NotContains(t, hdr.Get("X-Tokenizer-Errors"), "not json", "errors never quote the input")

	profiles, err := tokenizerv1.NewFhirServiceClient(r.conn).ListProfiles(t.Context(), &tokenizerv1.ListProfilesRequest{})
	require.NoError(t, err)
	names := map[string]bool{}
	for _, p := range profiles.Profiles {
		names[p.Name] = p.Reversible
	}
	assert.Equal(t, map[string]bool{"safe_harbor": false, "limited_data_set": true}, names)

	_, err = tokenizerv1.NewFhirServiceClient(r.conn).DetokenizeResources(t.Context(), &tokenizerv1.DetokenizeResourcesRequest{Profile: "limited_data_set", Resources: []string{lines[0]}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "no purpose of use")
}

// fhirPolicy: the honest broker may reveal everything; the analyst may reveal names
// masked and telecom not at all; the researcher may only de-identify.
const fhirPolicy = `
principals:
  - id: broker
    classes: {"*": [tokenize, detokenize]}
    purposes: [TREAT, HRESCH]
  - id: analyst
    classes:
      "*": [tokenize]
      fhir_id: [tokenize, detokenize]
      fhir_identifier: [tokenize, detokenize]
      fhir_address: [tokenize, detokenize]
      fhir_name: [tokenize, detokenize_masked]
    purposes: [HRESCH]
    acknowledge_oracle: true  # the masked names: tested here, not a recommendation
  - id: researcher
    classes: {"*": [tokenize]}
`

func fhirTLS(t *testing.T) (*running, func(cn string) tokenizerv1.FhirServiceClient) {
	t.Helper()
	ca := pkitest.NewCA(t, "tokenizer test CA")
	dir := t.TempDir()
	srv := ca.Issue(t, pkitest.Options{CN: "tokenizer", Server: true})
	e := newEnv(t)
	e.tls = &tlsFiles{
		cert:   pkitest.Write(t, dir, "server.crt", srv.CertPEM),
		key:    pkitest.Write(t, dir, "server.key", srv.KeyPEM),
		ca:     pkitest.Write(t, dir, "clients-ca.pem", ca.PEM),
		policy: pkitest.Write(t, dir, "policy.yaml", []byte(fhirPolicy)),
	}
	broker := ca.Issue(t, pkitest.Options{CN: "broker"})
	e.client = pkitest.ClientConfig(ca, &broker)
	r := e.start(t, true)
	return r, func(cn string) tokenizerv1.FhirServiceClient {
		leaf := ca.Issue(t, pkitest.Options{CN: cn})
		conn, err := grpc.NewClient(r.addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(pkitest.ClientConfig(ca, &leaf))))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return tokenizerv1.NewFhirServiceClient(conn)
	}
}

// TestFHIRRevealFollowsPolicy: re-identification reveals each field as Detokenize
// would for the caller: in full, masked, or left tokenized and reported as unrestored.
func TestFHIRRevealFollowsPolicy(t *testing.T) {
	t.Parallel()
	_, as := fhirTLS(t)
	ctx := t.Context()
	patient := `{"resourceType":"Patient","id":"pat-9","name":[{"family":"Rivera","given":["Ana"]}],
		"telecom":[{"system":"phone","value":"617-555-0142"}],"birthDate":"1961-04-18"}`
	deid, err := as("researcher").TokenizeResources(ctx, &tokenizerv1.TokenizeResourcesRequest{Profile: "limited_data_set", Resources: []string{patient}})
	require.NoError(t, err)
	require.Empty(t, deid.Errors)
	_, err = as("researcher").DetokenizeResources(ctx, &tokenizerv1.DetokenizeResourcesRequest{Profile: "limited_data_set", PurposeOfUse: "HRESCH", Resources: deid.Resources})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "no purpose granted, no reveal")

	full, err := as("broker").DetokenizeResources(ctx, &tokenizerv1.DetokenizeResourcesRequest{Profile: "limited_data_set", PurposeOfUse: "TREAT", Resources: deid.Resources})
	require.NoError(t, err)
	assert.Equal(t, semantic(t, patient), semantic(t, full.Resources[0]))
	assert.Empty(t, full.Unrestored)

	part, err := as("analyst").DetokenizeResources(ctx, &tokenizerv1.DetokenizeResourcesRequest{Profile: "limited_data_set", PurposeOfUse: "HRESCH", Resources: deid.Resources})
	require.NoError(t, err)
	out := part.Resources[0]
	assert.Contains(t, out, "1961-04-18", "dates are shifted back")
	assert.Contains(t, out, `"id":"pat-9"`, "ids the analyst may reveal come back")
	assert.NotContains(t, out, "Rivera", "names only masked")
	assert.Contains(t, out, "**", "the masked form")
	assert.NotContains(t, out, "617-555-0142", "telecom not revealed")
	reasons := map[string]bool{}
	for _, u := range part.Unrestored {
		reasons[u.Reason] = true
	}
	assert.True(t, reasons["masked reveal: the caller may only see class fhir_name masked"], "%v", part.Unrestored)
	assert.True(t, reasons["not revealed: the caller may not detokenize class fhir_telecom"], "%v", part.Unrestored)
}

// TestFHIROffsetsAgreeAcrossReplicas: two service processes on one database shift a new
// patient by the same days, even when both see it first at once; patients differ.
func TestFHIROffsetsAgreeAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.start(t, true), e.start(t, true)
	var resources []string
	for i := range 20 {
		resources = append(resources, fmt.Sprintf(`{"resourceType":"Patient","id":"rep-%d","birthDate":"2000-01-01"}`, i))
	}
	results := make([]*tokenizerv1.ResourcesResponse, 6)
	var wg sync.WaitGroup
	for i := range results {
		r := a
		if i%2 == 1 {
			r = b
		}
		wg.Go(func() {
			res, err := tokenizerv1.NewFhirServiceClient(r.conn).TokenizeResources(t.Context(), &tokenizerv1.TokenizeResourcesRequest{Profile: "limited_data_set", Resources: resources})
			assert.NoError(t, err)
			results[i] = res
		})
	}
	wg.Wait()
	births := map[string]bool{}
	for _, res := range results {
		require.NotNil(t, res)
		require.Empty(t, res.Errors)
		for i, out := range res.Resources {
			assert.Equal(t, semantic(t, results[0].Resources[i]), semantic(t, out), "resource %d", i)
		}
	}
	for _, out := range results[0].Resources {
		births[semantic(t, out).(map[string]any)["birthDate"].(string)] = true
	}
	assert.Greater(t, len(births), 1, "patients born the same day are shifted by different offsets")
	assert.False(t, births["2000-01-01"], "never shifted by 0")
}

// TestFHIRErasureTakesThePatientsTokensAndDateShift: a patient's FHIR tokens and date
// shift are the patient's: after ForgetSubject("Patient/<id>") the old de-identified
// resources cannot be re-identified, and the patient de-identified again gets new tokens.
func TestFHIRErasureTakesThePatientsTokensAndDateShift(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	ctx := t.Context()
	fc := tokenizerv1.NewFhirServiceClient(r.conn)
	resources := []string{
		`{"resourceType":"Patient","id":"erase-1","identifier":[{"system":"http://hospital.example.org/mrn","value":"MRN-77001"}],"birthDate":"1970-05-05",
		 "telecom":[{"system":"phone","value":"617-555-7701"}],"name":[{"family":"Erasefamily"}]}`,
		`{"resourceType":"Observation","id":"obs-1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/erase-1"},"effectiveDateTime":"2020-02-02"}`,
		`{"resourceType":"Patient","id":"keep-1","birthDate":"1971-06-06"}`,
	}
	deid, err := fc.TokenizeResources(ctx, &tokenizerv1.TokenizeResourcesRequest{Profile: "limited_data_set", Resources: resources})
	require.NoError(t, err)
	require.Empty(t, deid.Errors)
	reid := func() *tokenizerv1.ResourcesResponse {
		res, err := fc.DetokenizeResources(ctx, &tokenizerv1.DetokenizeResourcesRequest{Profile: "limited_data_set", PurposeOfUse: "TREAT", Resources: deid.Resources})
		require.NoError(t, err)
		return res
	}
	before := reid()
	require.Empty(t, before.Unrestored)
	for i := range resources {
		require.Equal(t, semantic(t, resources[i]), semantic(t, before.Resources[i]), "resource %d", i)
	}

	// The FHIR reveal is accounted to the patient, and only to that patient.
	ds, err := tokenizerv1.NewAuditServiceClient(r.conn).ListDisclosures(ctx, &tokenizerv1.ListDisclosuresRequest{Subject: "Patient/erase-1"})
	require.NoError(t, err)
	require.Len(t, ds.Disclosures, 1, "one FHIR re-identification disclosed the patient")
	assert.Equal(t, "TREAT", ds.Disclosures[0].PurposeOfUse)
	ds, err = tokenizerv1.NewAuditServiceClient(r.conn).ListDisclosures(ctx, &tokenizerv1.ListDisclosuresRequest{Subject: "Patient/nobody"})
	if status.Code(err) != codes.NotFound {
		require.NoError(t, err)
		assert.Empty(t, ds.Disclosures)
	}

	conn, err := pgx.Connect(ctx, e.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	offsets := func() (bound, all int) {
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(subject_id), count(*) FROM subject_offsets`).Scan(&bound, &all))
		return bound, all
	}
	bound, all := offsets()
	require.Equal(t, 2, bound, "both patients' date shifts are sealed under their subject keys")
	require.Equal(t, 2, all)

	_, err = r.subjects().ForgetSubject(ctx, &tokenizerv1.ForgetSubjectRequest{Subject: "Patient/erase-1", Reason: "patient request"})
	require.NoError(t, err)
	bound, all = offsets()
	assert.Equal(t, 1, bound, "the erased patient's date shift went with the subject")
	assert.Equal(t, 1, all)

	// The identifier and the phone were bound to the patient (subject: patient in the
	// preset): their tokens went with the subject. The name was not (a name is shared by
	// many patients): its token still reveals.
	var pat struct {
		Identifier []struct{ Value string }  `json:"identifier"`
		Telecom    []struct{ Value string }  `json:"telecom"`
		Name       []struct{ Family string } `json:"name"`
	}
	require.NoError(t, json.Unmarshal([]byte(deid.Resources[0]), &pat))
	reveal, err := r.tokenizer().Detokenize(ctx, &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{
		{Class: "fhir_identifier", Token: pat.Identifier[0].Value}, {Class: "fhir_telecom", Token: pat.Telecom[0].Value}, {Class: "fhir_name", Token: pat.Name[0].Family}}})
	require.NoError(t, err)
	assert.Equal(t, int32(codes.NotFound), reveal.Results[0].GetError().GetCode(), "the bound identifier was erased")
	assert.Equal(t, int32(codes.NotFound), reveal.Results[1].GetError().GetCode(), "the bound phone was erased")
	assert.Equal(t, "Erasefamily", reveal.Results[2].GetValue(), "an unbound value stays (documented)")

	after := reid()
	for _, planted := range []string{"MRN-77001", "1970-05-05", "2020-02-02", "erase-1", "617-555-7701"} {
		for i, out := range after.Resources {
			assert.NotContains(t, out, planted, "resource %d: the erased patient's data does not come back", i)
		}
	}
	failed := map[int32]string{}
	for _, f := range after.Errors {
		failed[f.Index] = f.Reason
	}
	assert.Contains(t, failed[0], "token not found", "the erased patient's resources fail by index and path: %v", after.Errors)
	assert.Contains(t, failed[1], "token not found", "%v", after.Errors)
	require.Len(t, after.Resources, 3)
	assert.Empty(t, after.Resources[0])
	assert.Equal(t, semantic(t, resources[2]), semantic(t, after.Resources[2]), "another patient is untouched")

	again, err := fc.TokenizeResources(ctx, &tokenizerv1.TokenizeResourcesRequest{Profile: "limited_data_set", Resources: resources[:1]})
	require.NoError(t, err)
	require.Empty(t, again.Errors)
	assert.NotEqual(t, semantic(t, deid.Resources[0]).(map[string]any)["id"], semantic(t, again.Resources[0]).(map[string]any)["id"],
		"the patient de-identified again is a new subject with new tokens")
}

// TestFHIRRefusalsAreAudited: requests the FHIR routes refuse before gRPC (method,
// media type, invalid UTF-8) get an OperationOutcome and an audit event under the FHIR
// operation, like the other routes' refusals; an NDJSON line that is not UTF-8 fails
// alone.
func TestFHIRRefusalsAreAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	send := func(method, path, ct, id, body string) (int, string) {
		code, out, hdr := fhirSend(t, r, method, path, ct, id, body)
		return code, out + hdr.Get("X-Tokenizer-Errors")
	}
	const deid = "/v1/fhir/$de-identify?profile=limited_data_set"
	cases := []struct {
		method, ct, id, body string
		code                 int
		outcome, reason      string
	}{
		{"GET", "", "fhir-refused-method", "", http.StatusMethodNotAllowed, "UNIMPLEMENTED", "method not allowed"},
		{"POST", "application/fhir+xml", "fhir-refused-type", "<Patient/>", http.StatusUnsupportedMediaType, "INVALID_ARGUMENT", "Content-Type"},
		{"POST", "application/fhir+json", "fhir-refused-utf8", "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"name\":[{\"family\":\"Riv\xffera\"}]}",
			http.StatusBadRequest, "INVALID_ARGUMENT", "not valid UTF-8"},
	}
	for _, c := range cases {
		code, out := send(c.method, deid, c.ct, c.id, c.body)
		assert.Equal(t, c.code, code, out)
		assert.Contains(t, out, "OperationOutcome")
		assert.Contains(t, out, c.reason)
		assert.NotContains(t, out, "Riv")
	}
	require.Eventually(t, func() bool {
		seen := 0
		for _, d := range events(t, e.dbURL) {
			for _, c := range cases {
				if d.RequestID == c.id && d.Operation == "tokenize_resources" && d.Outcome == c.outcome && strings.Contains(d.Reason, c.reason) {
					seen++
				}
			}
		}
		return seen == len(cases)
	}, 5*time.Second, 50*time.Millisecond, "every refusal is audited")

	ndjson := `{"resourceType":"Patient","id":"ok-1","birthDate":"1990-01-01"}` + "\n" +
		"{\"resourceType\":\"Patient\",\"id\":\"bad\",\"name\":[{\"family\":\"Zq\xffx\"}]}\n" +
		`{"resourceType":"Patient","id":"ok-2","birthDate":"1991-01-01"}` + "\n"
	code, out := send("POST", deid, "application/fhir+ndjson", "fhir-ndjson-utf8", ndjson)
	require.Equal(t, http.StatusOK, code, out)
	assert.Equal(t, 2, strings.Count(out, `"resourceType":"Patient"`), "the other lines are answered: %s", out)
	assert.Contains(t, out, `"index":1`)
	assert.Contains(t, out, "not valid UTF-8")
	assert.NotContains(t, out, "Zq")
}

// TestWarehouseRefusalsAreAudited: a warehouse call refused before the service (no
// purpose for a reveal, a body that is not the vendor's JSON) is audited as a refusal
// of Detokenize or Tokenize, like the other routes' refusals.
func TestWarehouseRefusalsAreAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	post := func(path, id, body string) int {
		req, err := http.NewRequest("POST", "http://"+r.addrs.HTTP+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusBadRequest, post("/v1/warehouse/snowflake/detokenize/ssn", "wh-no-purpose", `{"data":[[0,"950-00-0000"]]}`))
	assert.Equal(t, http.StatusBadRequest, post("/v1/warehouse/snowflake/tokenize/ssn", "wh-bad-json", `{"data":[[0,"123-45-6789"]`))
	want := map[string]string{"wh-no-purpose": "detokenize", "wh-bad-json": "tokenize"}
	require.Eventually(t, func() bool {
		seen := 0
		for _, d := range events(t, e.dbURL) {
			if op, ok := want[d.RequestID]; ok && d.Operation == op && d.Outcome == "INVALID_ARGUMENT" {
				assert.NotContains(t, d.Reason, "123-45-6789")
				seen++
			}
		}
		return seen == len(want)
	}, 5*time.Second, 50*time.Millisecond, "both refusals are audited")
}

// TestFHIRBundleLinksWhatEverTheOrder: a Bundle whose Observation comes before the
// Patient it references by urn:uuid still links after de-identification with the real
// engine (the Patient's id tokens are bound to the patient), and the Observation's dates
// are shifted by the patient's offset.
func TestFHIRBundleLinksWhatEverTheOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	const bundle = `{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:5a1b2c3d-0000-4000-8000-00000000000b","resource":{"resourceType":"Observation","id":"5a1b2c3d-0000-4000-8000-00000000000b","status":"final",
 "code":{"text":"x"},"subject":{"reference":"urn:uuid:5a1b2c3d-0000-4000-8000-00000000000a"},"effectiveDateTime":"2020-03-01"}},
{"fullUrl":"urn:uuid:5a1b2c3d-0000-4000-8000-00000000000a","resource":{"resourceType":"Patient","id":"5a1b2c3d-0000-4000-8000-00000000000a","birthDate":"1980-03-01"}}]}`
	code, out, hdr := fhirPost(t, r, "/v1/fhir/$de-identify?profile=limited_data_set", "application/fhir+json", bundle)
	require.Equal(t, http.StatusOK, code, out)
	require.Empty(t, hdr.Get("X-Tokenizer-Errors"))
	b := bundleEntries(t, out)
	require.Len(t, b.Entry, 2)
	assert.Equal(t, b.Entry[1].FullURL, b.Entry[0].Resource["subject"].(map[string]any)["reference"], "the reference still names the Patient entry")
	obs, err := time.Parse(time.DateOnly, b.Entry[0].Resource["effectiveDateTime"].(string))
	require.NoError(t, err)
	born, err := time.Parse(time.DateOnly, b.Entry[1].Resource["birthDate"].(string))
	require.NoError(t, err)
	origObs, _ := time.Parse(time.DateOnly, "2020-03-01")
	origBorn, _ := time.Parse(time.DateOnly, "1980-03-01")
	assert.Equal(t, origObs.Sub(origBorn), obs.Sub(born), "one patient, one offset: the interval is kept")
	assert.NotEqual(t, origObs, obs, "the date is shifted")
}

// largeBundle makes a Bundle of n entries: per patient a Patient (urn:uuid fullUrl) and
// Observations that name it by urn:uuid, so that parts of the Bundle refer to patients
// of earlier parts; entry bad (if >= 0) is a Patient with a misspelled element.
func largeBundle(n, bad int) (string, []string) {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	var planted []string
	pat := ""
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		switch {
		case i == bad:
			fmt.Fprintf(&b, `{"fullUrl":"urn:uuid:bad-%d","resource":{"resourceType":"Patient","id":"bad-%d","birthdate":"1950-01-01"}}`, i, i)
		case i%10 == 0:
			pat = fmt.Sprintf("5e1f0000-0000-4000-8000-%012d", i)
			family := fmt.Sprintf("Bigfam%06dx", i)
			planted = append(planted, pat, family)
			fmt.Fprintf(&b, `{"fullUrl":"urn:uuid:%s","resource":{"resourceType":"Patient","id":%q,"name":[{"family":%q}],"birthDate":"1971-02-%02d"}}`,
				pat, pat, family, 1+i%28)
		default:
			fmt.Fprintf(&b, `{"fullUrl":"urn:uuid:7a000000-0000-4000-8000-%012d","resource":{"resourceType":"Observation","id":"7a000000-0000-4000-8000-%012d","status":"final",`+
				`"code":{"text":"x"},"subject":{"reference":"urn:uuid:%s"},"effectiveDateTime":"2020-03-%02dT10:00:00Z"}}`, i, i, pat, 1+i%28)
		}
	}
	b.WriteString(`],"total":` + fmt.Sprint(n) + `}`)
	return b.String(), planted
}

// A Bundle larger than the message limit is sent in parts over one stream, each part
// audited, and answered as one Bundle that still links; it round-trips exactly, and a
// bad entry in a late part is reported with its place in the whole Bundle.
func TestFHIRLargeBundleOverRESTGoesInParts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mutate = func(c *config.Config) { c.Limits.MaxMessageBytes = 64 << 10 }
	r := e.start(t, true)
	in, planted := largeBundle(2000, 1537)
	require.Greater(t, len(in), 4*(64<<10), "the Bundle needs several parts")
	code, out, hdr := fhirPost(t, r, "/v1/fhir/$de-identify?profile=limited_data_set", "application/fhir+json", in)
	require.Equal(t, http.StatusOK, code, out)
	for _, p := range planted {
		require.NotContains(t, out, p)
	}
	var got struct {
		ResourceType string            `json:"resourceType"`
		Type         string            `json:"type"`
		Total        int               `json:"total"`
		Entry        []json.RawMessage `json:"entry"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), "one Bundle")
	assert.Equal(t, "Bundle", got.ResourceType)
	assert.Equal(t, "collection", got.Type)
	assert.Equal(t, 2000, got.Total)
	assert.Len(t, got.Entry, 1999, "every entry but the bad one")
	assert.Contains(t, hdr.Get("X-Tokenizer-Errors"), `"path":"Bundle.entry[1537].resource.birthdate"`, "the bad entry's place in the whole Bundle")
	assert.NotContains(t, hdr.Get("X-Tokenizer-Errors"), "1950")

	// Re-identification (also in parts) gives the Bundle back, but for the bad entry.
	code, back, _ := fhirPost(t, r, "/v1/fhir/$re-identify?profile=limited_data_set&purpose_of_use=TREAT", "application/fhir+json", out)
	require.Equal(t, http.StatusOK, code, back)
	var want map[string]any
	require.NoError(t, json.Unmarshal([]byte(in), &want))
	entries := want["entry"].([]any)
	want["entry"] = append(entries[:1537:1537], entries[1538:]...)
	assert.Equal(t, want, semantic(t, back), "the round trip through parts is exact: every Observation kept its patient's shift")

	// Each part was a stream message with an audit event of its own.
	parts := 0
	for _, d := range events(t, e.dbURL) {
		if d.Operation == "tokenize_resources_stream" {
			parts++
		}
	}
	assert.Greater(t, parts, 4)

	// What cannot be restored (Safe Harbor generalized every date) is listed up to a
	// bound, then counted: a trailer must stay small whatever the Bundle's size.
	code, sh, _ := fhirPost(t, r, "/v1/fhir/$de-identify?profile=safe_harbor", "application/fhir+json", in)
	require.Equal(t, http.StatusOK, code)
	code, _, hdr = fhirPost(t, r, "/v1/fhir/$re-identify?profile=safe_harbor&purpose_of_use=TREAT", "application/fhir+json", sh)
	require.Equal(t, http.StatusOK, code)
	var unrestored []struct {
		Index  int    `json:"index"`
		Path   string `json:"path"`
		Reason string `json:"reason"`
	}
	require.NoError(t, json.Unmarshal([]byte(hdr.Get("X-Tokenizer-Unrestored")), &unrestored))
	require.Greater(t, len(unrestored), 2)
	last := unrestored[len(unrestored)-1]
	assert.Equal(t, -1, last.Index)
	assert.Regexp(t, `^\d+ more not listed$`, last.Reason)
	assert.Contains(t, unrestored[0].Path, "Bundle.entry[")
	assert.Less(t, len(hdr.Get("X-Tokenizer-Unrestored")), 2048, "a trailer Go's client (and curl) accepts")

	// Over the limit and not a Bundle: 413; a body that is not JSON: 400.
	big := `{"resourceType":"Patient","id":"x","name":[{"family":"` + strings.Repeat("a", 70<<10) + `"}]}`
	code, _, _ = fhirPost(t, r, "/v1/fhir/$de-identify?profile=limited_data_set", "application/fhir+json", big)
	assert.Equal(t, http.StatusRequestEntityTooLarge, code)
	// A Bundle with one entry larger than a part can hold: 413 too, naming the limit.
	// (40 KB: more than half of the 64 KiB limit, though less than all of it.)
	halfPlus := `{"resource":{"resourceType":"Patient","id":"x","name":[{"family":"` + strings.Repeat("a", 40<<10) + `"}]}}`
	pad := `,{"resource":{"resourceType":"Patient","id":"p","gender":"other"}}`
	bigEntry := `{"resourceType":"Bundle","type":"collection","entry":[` + halfPlus + strings.Repeat(pad, 600) + `]}`
	require.Greater(t, len(bigEntry), 64<<10)
	code, out, _ = fhirPost(t, r, "/v1/fhir/$de-identify?profile=limited_data_set", "application/fhir+json", bigEntry)
	assert.Equal(t, http.StatusRequestEntityTooLarge, code, out)
	assert.Contains(t, out, "limits.max_message_bytes")

	// A Bundle that fails after its answer has started (cut short, a repeated element
	// after entry) never looks complete: the connection is cut before the chunked body's
	// end, so the client gets an error, and the failure is audited with its cause.
	for _, bad := range []string{in[:len(in)/2], in[:len(in)-1] + `,"type":"batch"}`} {
		req, err := http.NewRequest("POST", "http://"+r.addrs.HTTP+"/v1/fhir/$de-identify?profile=limited_data_set", strings.NewReader(bad))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // cut before the headers: an error too
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			assert.Error(t, err, "the answer is cut, not complete")
		}
		assert.NotContains(t, string(body), planted[0])
	}
	var refused []string
	for _, d := range events(t, e.dbURL) {
		if d.Operation == "tokenize_resources_stream" && d.Outcome == "INVALID_ARGUMENT" {
			refused = append(refused, d.Reason)
		}
	}
	require.Len(t, refused, 3, "each failed Bundle is audited")
	assert.Contains(t, refused[0], "larger than half of limits.max_message_bytes")
	assert.Contains(t, refused[2], "appears twice")
}
