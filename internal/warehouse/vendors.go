package warehouse

import (
	"encoding/json"
	"net/http"
)

// Snowflake external function (docs.snowflake.com, "Remote service input and output
// data formats"): {"data": [[row_number, arg, ...], ...]} in, {"data": [[row_number,
// result], ...]} out with HTTP 200. The query id and, with CONTEXT_HEADERS =
// (CURRENT_USER), the user arrive in sf- headers; HEADERS = ('purpose' = ...) gives the
// purpose of use as sf-custom-purpose. Snowflake has no per-row error: a
// row that fails gives NULL (or with on_error=fail a non-200 answer that fails the
// query); a failed call answers non-200 with {"error": "..."}.
func (h *handler) snowflake(w http.ResponseWriter, r *http.Request) {
	fail := h.failer(w, r, func(e *callError) { writeJSON(w, e.status, map[string]string{"error": e.msg}) })
	// HEADERS = ('purpose' = 'TREAT') in CREATE EXTERNAL FUNCTION arrives as sf-custom-purpose.
	custom := map[string]string{}
	for _, k := range []string{"purpose", "justification", "on_error"} {
		custom[k] = r.Header.Get("sf-custom-" + k)
	}
	c, cerr := h.callFrom(r, "snowflake", custom)
	if cerr != nil {
		fail(cerr)
		return
	}
	c.queryID = r.Header.Get("sf-external-function-current-query-id")
	c.user = r.Header.Get("sf-context-current-user")
	var body struct {
		Data *[][]json.RawMessage `json:"data"`
	}
	if cerr := h.decode(w, r, &body, "Snowflake external function"); cerr != nil {
		fail(cerr)
		return
	}
	if body.Data == nil {
		fail(badRequest(`request body: "data" is required`))
		return
	}
	values, bad, cerr := rowArgs(*body.Data, 1)
	if cerr != nil {
		fail(cerr)
		return
	}
	out, cerr := h.apply(h.outgoing(r, c), c, values, bad)
	if cerr != nil {
		fail(cerr)
		return
	}
	rows := make([][]any, len(out))
	for i, v := range out {
		rows[i] = []any{(*body.Data)[i][0], v}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": rows})
}

// BigQuery remote function (cloud.google.com, "Work with remote functions"): {"requestId",
// "caller", "sessionUser", "userDefinedContext": {...}, "calls": [[arg, ...], ...]} in,
// {"replies": [...]} out with HTTP 200, or {"errorMessage": "..."} with a non-200 status
// (BigQuery retries 408, 429, 500, 503 and 504, and fails the query on the others).
// userDefinedContext may carry operation, class, purpose, justification, on_error.
func (h *handler) bigquery(w http.ResponseWriter, r *http.Request) {
	fail := h.failer(w, r, func(e *callError) { writeJSON(w, e.status, map[string]string{"errorMessage": e.msg}) })
	var body struct {
		RequestID   string               `json:"requestId"`
		Caller      string               `json:"caller"`
		SessionUser string               `json:"sessionUser"`
		Context     map[string]string    `json:"userDefinedContext"`
		Calls       *[][]json.RawMessage `json:"calls"`
	}
	if cerr := h.decode(w, r, &body, "BigQuery remote function"); cerr != nil {
		fail(cerr)
		return
	}
	c, cerr := h.callFrom(r, "bigquery", body.Context)
	if cerr != nil {
		fail(cerr)
		return
	}
	if body.Calls == nil {
		fail(badRequest(`request body: "calls" is required`))
		return
	}
	c.queryID, c.user = body.RequestID, body.SessionUser
	values, bad, cerr := rowArgs(*body.Calls, 0)
	if cerr != nil {
		fail(cerr)
		return
	}
	out, cerr := h.apply(h.outgoing(r, c), c, values, bad)
	if cerr != nil {
		fail(cerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"replies": out})
}

// Redshift Lambda UDF (docs.aws.amazon.com, "Scalar Lambda UDFs"): {"request_id",
// "cluster", "user", "database", "external_function", "query_id", "num_records",
// "arguments": [[arg, ...], ...]} in, {"success": true, "num_records": N, "results":
// [...]} out, or {"success": false, "error_msg": "..."}. A Lambda proxy forwards the
// event here and returns the body as it is.
func (h *handler) redshift(w http.ResponseWriter, r *http.Request) {
	fail := h.failer(w, r, func(e *callError) {
		writeJSON(w, e.status, map[string]any{"success": false, "error_msg": e.msg})
	})
	c, cerr := h.callFrom(r, "redshift", nil)
	if cerr != nil {
		fail(cerr)
		return
	}
	var body struct {
		RequestID  string               `json:"request_id"`
		User       string               `json:"user"`
		QueryID    json.Number          `json:"query_id"`
		NumRecords *int                 `json:"num_records"`
		Arguments  *[][]json.RawMessage `json:"arguments"`
	}
	if cerr := h.decode(w, r, &body, "Redshift Lambda UDF"); cerr != nil {
		fail(cerr)
		return
	}
	if body.Arguments == nil {
		fail(badRequest(`request body: "arguments" is required`))
		return
	}
	if body.NumRecords != nil && *body.NumRecords != len(*body.Arguments) {
		fail(badRequest("num_records is %d but arguments has %d rows", *body.NumRecords, len(*body.Arguments)))
		return
	}
	c.queryID, c.user = body.RequestID, body.User
	if body.QueryID != "" {
		c.queryID = body.QueryID.String()
		if body.RequestID != "" {
			c.queryID += "/" + body.RequestID
		}
	}
	values, bad, cerr := rowArgs(*body.Arguments, 0)
	if cerr != nil {
		fail(cerr)
		return
	}
	out, cerr := h.apply(h.outgoing(r, c), c, values, bad)
	if cerr != nil {
		fail(cerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "num_records": len(out), "results": out})
}
