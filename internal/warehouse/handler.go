package warehouse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/grpcx"
	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// Prefix is where the endpoints are mounted.
const Prefix = "/v1/warehouse/"

// Options configure the endpoints.
type Options struct {
	// Metadata returns the gRPC metadata that carries the HTTP caller's verified
	// identity to the service (the gateway's forwardIdentity); nil sends none.
	Metadata func(context.Context, *http.Request) metadata.MD
	// MaxBodyBytes limits a request body (default 4 MiB).
	MaxBodyBytes int64
	// MaxItems is the service's items-per-request limit; larger batches are split.
	MaxItems int
	// Refused records a call refused here, before it reached the service (bad body,
	// missing purpose, ...), for the audit log: op is tokenize or detokenize (tokenize
	// when not known yet). When it fails the caller gets 503 instead. nil records nothing.
	Refused func(r *http.Request, op string, httpStatus int, reason string) error
}

// New returns the handler for Prefix: snowflake/{op}/{class}, bigquery (the function's
// userDefinedContext names op and class) or bigquery/{op}/{class}, redshift/{op}/{class};
// op is tokenize or detokenize, and ?purpose= gives detokenize its purpose of use.
func New(client tokenizerv1.TokenizerServiceClient, o Options) http.Handler {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 4 << 20
	}
	if o.MaxItems <= 0 {
		o.MaxItems = 1000
	}
	h := &handler{client: client, opts: o}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Prefix+"snowflake/{op}/{class}", h.snowflake)
	mux.HandleFunc("POST "+Prefix+"bigquery", h.bigquery)
	mux.HandleFunc("POST "+Prefix+"bigquery/{op}/{class}", h.bigquery)
	mux.HandleFunc("POST "+Prefix+"redshift/{op}/{class}", h.redshift)
	return mux
}

type handler struct {
	client tokenizerv1.TokenizerServiceClient
	opts   Options
}

// call is one warehouse batch: what to do and who asked, from the URL, the query
// string and the vendor's context fields.
type call struct {
	warehouse     string
	op, class     string
	purpose       string
	justification string
	failRows      bool   // on_error=fail: a bad row fails the call instead of giving NULL
	queryID       string // recorded as the audit event's request id
	user          string // the warehouse's session user, recorded with reveals
}

// callError is a failure of the whole call, with the HTTP status it maps to.
type callError struct {
	status int
	msg    string
	// service marks a failure the service returned (and audited); others are refusals
	// made here, which Options.Refused records.
	service bool
}

// failer returns the vendor's failure writer, recording refusals made here first.
func (h *handler) failer(w http.ResponseWriter, r *http.Request, write func(*callError)) func(*callError) {
	return func(e *callError) {
		if !e.service && h.opts.Refused != nil {
			op := r.PathValue("op")
			if op != "detokenize" {
				op = "tokenize"
			}
			if err := h.opts.Refused(r, op, e.status, e.msg); err != nil {
				e = &callError{status: http.StatusServiceUnavailable, msg: "audit log unavailable: the request was not completed"}
			}
		}
		write(e)
	}
}

func (e *callError) Error() string { return e.msg }

func badRequest(format string, a ...any) *callError {
	return &callError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, a...)}
}

func (h *handler) callFrom(r *http.Request, warehouse string, ctxFields map[string]string) (*call, *callError) {
	c := &call{warehouse: warehouse, op: r.PathValue("op"), class: r.PathValue("class")}
	q := r.URL.Query()
	get := func(key string) string {
		if v := q.Get(key); v != "" {
			return v
		}
		return ctxFields[key]
	}
	if c.op == "" {
		c.op, c.class = get("operation"), get("class")
	}
	c.purpose, c.justification = get("purpose"), get("justification")
	switch get("on_error") {
	case "", "null":
	case "fail":
		c.failRows = true
	default:
		return nil, badRequest("on_error: want null or fail")
	}
	if c.op != "tokenize" && c.op != "detokenize" {
		return nil, badRequest("operation: want tokenize or detokenize")
	}
	if c.class == "" {
		return nil, badRequest("class: required (in the URL path or the function's context)")
	}
	if c.op == "detokenize" && c.purpose == "" {
		return nil, badRequest("purpose: required for detokenize (?purpose= with an HL7 v3 PurposeOfUse code such as TREAT)")
	}
	return c, nil
}

// decode reads a JSON body strictly; errors name the contract, never the input.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, dst any, contract string) *callError {
	body := http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &callError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body exceeds the limit of %d bytes", h.opts.MaxBodyBytes)}
		}
		return badRequest("request body is not valid JSON for the %s format", contract)
	}
	if dec.More() {
		return badRequest("request body has data after the JSON object")
	}
	return nil
}

// argument reads one function argument: a string, a number (its JSON text) or null.
func argument(raw json.RawMessage) (*string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("argument is not a valid JSON string")
		}
		return &s, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		s := string(raw)
		return &s, nil
	}
	return nil, errors.New("argument is not a string")
}

var requestIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9._:-]`)

// outgoing is the context of the service calls: the caller's identity, the client's
// address, and the warehouse's query id as the request id of the audit event.
func (h *handler) outgoing(r *http.Request, c *call) context.Context {
	md := metadata.MD{}
	if h.opts.Metadata != nil {
		md = metadata.Join(md, h.opts.Metadata(r.Context(), r))
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		md.Set("x-forwarded-for", host)
	}
	if c.user != "" {
		md.Set(grpcx.OnBehalfOfKey, grpcx.EncodeOnBehalfOf(c.warehouse+" session user "+c.user))
	}
	if c.queryID != "" {
		id := requestIDUnsafe.ReplaceAllString(c.warehouse+":"+c.queryID, "_")
		md.Set("x-request-id", id[:min(len(id), 64)])
	}
	return metadata.NewOutgoingContext(r.Context(), md)
}

// auditJustification records the warehouse, its session user and query id with every
// reveal (the audit event's justification), after the caller's own justification.
func (c *call) auditJustification() string {
	parts := []string{}
	if c.justification != "" {
		parts = append(parts, c.justification)
	}
	parts = append(parts, "warehouse="+c.warehouse)
	if c.user != "" {
		parts = append(parts, "session_user="+c.user)
	}
	if c.queryID != "" {
		parts = append(parts, "query_id="+c.queryID)
	}
	j := strings.Join(parts, "; ")
	for len(j) > 1024 {
		j = j[:len(j)-1]
	}
	return strings.ToValidUTF8(j, "")
}

// statusOf maps a failed service call to an HTTP status.
func statusOf(err error) *callError {
	st := status.Convert(err)
	code := map[codes.Code]int{
		codes.InvalidArgument: http.StatusBadRequest, codes.NotFound: http.StatusNotFound,
		codes.PermissionDenied: http.StatusForbidden, codes.Unauthenticated: http.StatusUnauthorized,
		codes.ResourceExhausted: http.StatusTooManyRequests, codes.Unavailable: http.StatusServiceUnavailable,
		codes.DeadlineExceeded: http.StatusGatewayTimeout,
	}[st.Code()]
	if code == 0 {
		code = http.StatusInternalServerError
	}
	return &callError{status: code, msg: st.Message(), service: true}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
