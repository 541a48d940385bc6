package warehouse_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var ssnToken = regexp.MustCompile(`^9\d\d-\d\d-\d{4}$`)

// TestSnowflake follows the Snowflake external function data format: a batch of
// [row_number, argument] rows in, [row_number, result] rows out.
func TestSnowflake(t *testing.T) {
	e := start(t)
	sf := map[string]string{
		"sf-external-function-current-query-id": "01a2b3c4-0000-1234-0000-000100020003",
		"sf-external-function-query-batch-id":   "01a2b3c4-0000-1234-0000-000100020003:1:0:0:0",
		"sf-context-current-user":               "ANALYST_1",
		"sf-external-function-format":           "json",
		"sf-external-function-format-version":   "1.0",
	}
	// Shaped as the documented example, one argument per row; NULL and a bad value.
	code, out, raw := e.post(t, gateway, "/v1/warehouse/snowflake/tokenize/ssn",
		`{"data": [[0, "123-45-6789"], [1, null], [2, "not-an-ssn"], [3, 234567890]]}`, sf)
	require.Equal(t, http.StatusOK, code, raw)
	rows := out["data"].([]any)
	require.Len(t, rows, 4)
	for i, r := range rows {
		assert.EqualValues(t, i, r.([]any)[0], "row numbers echoed")
	}
	tok := rows[0].([]any)[1].(string)
	assert.Regexp(t, ssnToken, tok)
	assert.Nil(t, rows[1].([]any)[1], "NULL stays NULL")
	assert.Nil(t, rows[2].([]any)[1], "a value that does not fit gives NULL")
	assert.Regexp(t, `^9\d{8}$`, rows[3].([]any)[1], "a number argument is tokenized as its digits")
	ev := last(t, e.events(t), gateway)
	assert.Equal(t, "tokenize", ev["operation"])
	assert.Equal(t, "snowflake session user ANALYST_1", ev["on_behalf_of"], "tokenize records the warehouse's user too")

	sf["sf-custom-purpose"] = "TREAT" // HEADERS = ('purpose' = 'TREAT')
	code, out, raw = e.post(t, gateway, "/v1/warehouse/snowflake/detokenize/ssn",
		fmt.Sprintf(`{"data": [[0, %q], [1, null]]}`, tok), sf)
	require.Equal(t, http.StatusOK, code, raw)
	assert.Equal(t, []any{[]any{0.0, "123-45-6789"}, []any{1.0, nil}}, out["data"])
	ev = last(t, e.events(t), gateway)
	assert.Equal(t, "detokenize", ev["operation"])
	assert.Equal(t, "snowflake session user ANALYST_1", ev["on_behalf_of"])
	assert.Equal(t, "snowflake:01a2b3c4-0000-1234-0000-000100020003", ev["request_id"], "the query id is the audit event's request id")
	assert.Equal(t, "warehouse=snowflake; session_user=ANALYST_1; query_id=01a2b3c4-0000-1234-0000-000100020003", ev["justification"])
	assert.Equal(t, "TREAT", ev["purpose_of_use"])
	delete(sf, "sf-custom-purpose")

	for _, tt := range []struct{ name, path, body, want string }{
		{"bad row with on_error=fail", "/v1/warehouse/snowflake/tokenize/ssn?on_error=fail", `{"data": [[0, "123-45-6789"], [1, "not-an-ssn"]]}`, "row 1: class ssn: value does not fit format ssn"},
		{"unknown class", "/v1/warehouse/snowflake/tokenize/no_such_class", `{"data": [[0, "123-45-6789"]]}`, "class no_such_class: unknown class"},
		{"missing purpose", "/v1/warehouse/snowflake/detokenize/ssn", `{"data": [[0, "912-34-5678"]]}`, "purpose: required for detokenize"},
		{"malformed body", "/v1/warehouse/snowflake/tokenize/ssn", `{"data": [[0, "123-45-6789"]`, "request body is not valid JSON for the Snowflake external function format"},
		{"no data", "/v1/warehouse/snowflake/tokenize/ssn", `{"rows": []}`, `"data" is required`},
		{"two arguments", "/v1/warehouse/snowflake/tokenize/ssn", `{"data": [[0, "123-45-6789", "x"]]}`, "the function takes one argument"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, raw := e.post(t, gateway, tt.path, tt.body, sf)
			assert.Equal(t, http.StatusBadRequest, code, raw)
			assert.Contains(t, out["error"], tt.want)
			assert.NotContains(t, raw, "not-an-ssn", "errors never quote a value")
		})
	}
}

// TestBigQuery follows the BigQuery remote function contract: requestId, caller,
// sessionUser, userDefinedContext and calls in; replies or errorMessage out.
func TestBigQuery(t *testing.T) {
	e := start(t)
	body := func(ctx, calls string) string {
		return `{"requestId": "124ab1c", "caller": "//bigquery.googleapis.com/projects/myproject/jobs/myproject:US.bquxjob_5b4c112c_17961fafeaf",
		"sessionUser": "test-user@test-company.com", "userDefinedContext": ` + ctx + `, "calls": ` + calls + `}`
	}
	code, out, raw := e.post(t, gateway, "/v1/warehouse/bigquery",
		body(`{"operation": "tokenize", "class": "mrn"}`, `[["MRN-00001234"], [null], ["MRN-12"]]`), nil)
	require.Equal(t, http.StatusOK, code, raw)
	replies := out["replies"].([]any)
	require.Len(t, replies, 3)
	assert.Regexp(t, `^MRN-\d{8}$`, replies[0])
	assert.NotEqual(t, "MRN-00001234", replies[0])
	assert.Nil(t, replies[1])
	assert.Nil(t, replies[2])
	ev := last(t, e.events(t), gateway)
	assert.Equal(t, "tokenize", ev["operation"])
	assert.Equal(t, "bigquery session user test-user@test-company.com", ev["on_behalf_of"])

	// The function may also name op and class in its endpoint URL.
	code, out, raw = e.post(t, gateway, "/v1/warehouse/bigquery/detokenize/mrn",
		body(`{"purpose": "HOPERAT"}`, fmt.Sprintf(`[[%q]]`, replies[0])), nil)
	require.Equal(t, http.StatusOK, code, raw)
	assert.Equal(t, []any{"MRN-00001234"}, out["replies"])
	ev = last(t, e.events(t), gateway)
	assert.Equal(t, "bigquery:124ab1c", ev["request_id"])
	assert.Equal(t, "HOPERAT", ev["purpose_of_use"])
	assert.Contains(t, ev["justification"], "session_user=test-user@test-company.com")

	for _, tt := range []struct{ name, body, want string }{
		{"bad row with on_error=fail", body(`{"operation": "tokenize", "class": "mrn", "on_error": "fail"}`, `[["MRN-12"]]`), "row 0: class mrn: value does not fit"},
		{"unknown class", body(`{"operation": "tokenize", "class": "no_such_class"}`, `[["x"]]`), "unknown class"},
		{"missing purpose", body(`{"operation": "detokenize", "class": "mrn"}`, `[["MRN-12345678"]]`), "purpose: required for detokenize"},
		{"no operation", body(`{}`, `[["x"]]`), "operation: want tokenize or detokenize"},
		{"malformed body", `{"requestId": "1", "calls": [[`, "request body is not valid JSON for the BigQuery remote function format"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, raw := e.post(t, gateway, "/v1/warehouse/bigquery", tt.body, nil)
			assert.Equal(t, http.StatusBadRequest, code, raw)
			assert.Contains(t, out["errorMessage"], tt.want)
			assert.NotContains(t, out, "replies")
		})
	}
}

// TestRedshift follows the Redshift Lambda UDF contract: arguments and num_records in,
// success, num_records and results out, or success false with error_msg.
func TestRedshift(t *testing.T) {
	e := start(t)
	event := func(args string, n int) string {
		return fmt.Sprintf(`{"request_id": "23FF1F97-F28A-44AA-AB67-266ED976BF40", "cluster": "arn:aws:redshift:us-east-1:123456789012:cluster:my-cluster",
		"user": "adminuser", "database": "db1", "external_function": "public.f_tokenize_ssn", "query_id": 5678234,
		"num_records": %d, "arguments": %s}`, n, args)
	}
	code, out, raw := e.post(t, gateway, "/v1/warehouse/redshift/tokenize/ssn",
		event(`[["123-45-6789"], [null], null, ["345-67-8901"]]`, 4), nil)
	require.Equal(t, http.StatusOK, code, raw)
	assert.Equal(t, true, out["success"])
	assert.EqualValues(t, 4, out["num_records"])
	results := out["results"].([]any)
	require.Len(t, results, 4)
	assert.Regexp(t, ssnToken, results[0])
	assert.Nil(t, results[1])
	assert.Nil(t, results[2], "a null row gives NULL")
	assert.Regexp(t, ssnToken, results[3])
	ev := last(t, e.events(t), gateway)
	assert.Equal(t, "redshift session user adminuser", ev["on_behalf_of"])

	code, out, raw = e.post(t, gateway, "/v1/warehouse/redshift/detokenize/ssn?purpose=TREAT",
		event(fmt.Sprintf(`[[%q], [%q]]`, results[3], results[0]), 2), nil)
	require.Equal(t, http.StatusOK, code, raw)
	assert.Equal(t, []any{"345-67-8901", "123-45-6789"}, out["results"])
	ev = last(t, e.events(t), gateway)
	assert.Equal(t, "redshift:5678234_23FF1F97-F28A-44AA-AB67-266ED976BF40", ev["request_id"])
	assert.Contains(t, ev["justification"], "session_user=adminuser")

	for _, tt := range []struct{ name, path, body, want string }{
		{"bad row with on_error=fail", "/v1/warehouse/redshift/tokenize/ssn?on_error=fail", event(`[["12-34"]]`, 1), "row 0: class ssn: value does not fit"},
		{"unknown class", "/v1/warehouse/redshift/tokenize/nope", event(`[["123-45-6789"]]`, 1), "class nope: unknown class"},
		{"missing purpose", "/v1/warehouse/redshift/detokenize/ssn", event(`[["912-34-5678"]]`, 1), "purpose: required"},
		{"num_records differs", "/v1/warehouse/redshift/tokenize/ssn", event(`[["123-45-6789"]]`, 2), "num_records is 2 but arguments has 1 rows"},
		{"malformed body", "/v1/warehouse/redshift/tokenize/ssn", `{"arguments": [["x"]`, "request body is not valid JSON for the Redshift Lambda UDF format"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, raw := e.post(t, gateway, tt.path, tt.body, nil)
			assert.Equal(t, http.StatusBadRequest, code, raw)
			assert.Equal(t, false, out["success"])
			assert.Contains(t, out["error_msg"], tt.want)
		})
	}
}

// TestDeniedCallers refuses callers the policy does not allow, in each contract's
// error shape, and audits every refusal with the caller's identity.
func TestDeniedCallers(t *testing.T) {
	e := start(t)
	for _, tt := range []struct {
		name, caller, path, body, field string
		status                          int
	}{
		{"snowflake, no grant", "nothing-granted", "/v1/warehouse/snowflake/tokenize/ssn", `{"data": [[0, "123-45-6789"]]}`, "error", http.StatusForbidden},
		{"bigquery, other class only", "mrn-only", "/v1/warehouse/bigquery/tokenize/ssn", `{"requestId": "r9", "calls": [["123-45-6789"]]}`, "errorMessage", http.StatusForbidden},
		{"redshift, no reveal grant", "mrn-only", "/v1/warehouse/redshift/detokenize/mrn?purpose=TREAT", `{"num_records": 1, "arguments": [["MRN-12345678"]]}`, "error_msg", http.StatusForbidden},
		{"no client certificate", "", "/v1/warehouse/snowflake/tokenize/ssn", `{"data": [[0, "123-45-6789"]]}`, "error", http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, raw := e.post(t, tt.caller, tt.path, tt.body, nil)
			assert.Equal(t, tt.status, code, raw)
			assert.NotEmpty(t, out[tt.field], raw)
			assert.NotContains(t, raw, "123-45-6789")
			want := tt.caller
			if want == "" {
				want = "unauthenticated"
			}
			ev := last(t, e.events(t), want)
			if tt.status == http.StatusForbidden {
				// A request refused whole is PERMISSION_DENIED; items refused within an
				// allowed request are recorded as the reason (the service's convention).
				denied := ev["outcome"] == "PERMISSION_DENIED" || regexp.MustCompile(`^denied by policy: class \w+: \w+`).MatchString(ev["reason"].(string))
				assert.True(t, denied, "refusal audited: %v", ev)
			} else {
				assert.Equal(t, "UNAUTHENTICATED", ev["outcome"], ev)
			}
		})
	}
}

// A session user in any script (or with control characters) is recorded, decoded and
// cleaned, and never fails the call; a REST caller's own on-behalf-of header likewise.
func TestSessionUsersInAnyScript(t *testing.T) {
	e := start(t)
	for _, tc := range []struct{ user, want string }{
		{"José Müller", "bigquery session user José Müller"},
		{"山田\u0001太郎\n", "bigquery session user 山田太郎"},
		{"100% analyst", "bigquery session user 100% analyst"},
	} {
		userJSON, _ := json.Marshal(tc.user)
		code, _, raw := e.post(t, gateway, "/v1/warehouse/bigquery",
			`{"requestId": "r1", "sessionUser": `+string(userJSON)+`, "userDefinedContext": {"operation": "tokenize", "class": "mrn"}, "calls": [["MRN-00001234"]]}`, nil)
		require.Equal(t, http.StatusOK, code, raw)
		ev := last(t, e.events(t), gateway)
		assert.Equal(t, tc.want, ev["on_behalf_of"])
	}
	code, _, raw := e.post(t, gateway, "/v1/tokenize", `{"items":[{"class":"mrn","value":"MRN-00001234"}]}`,
		map[string]string{"X-Tokenizer-On-Behalf-Of": "Dr. José Müller"})
	require.Equal(t, http.StatusOK, code, raw)
	assert.Equal(t, "Dr. José Müller", last(t, e.events(t), gateway)["on_behalf_of"])
}
