package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// FHIR-native REST: POST /v1/fhir/$de-identify?profile=NAME and
// /v1/fhir/$re-identify?profile=NAME&purpose_of_use=CODE[&justification=...] take and
// return application/fhir+json (a resource or a Bundle, answered in the same shape) or
// application/fhir+ndjson (one resource per line, streamed in batches). They call
// FhirService over the in-memory connection, so every interceptor runs. Per-resource
// failures (index, type, path, reason; never values) are in the X-Tokenizer-Errors
// header (a trailer for NDJSON); a request that fails as a whole answers an
// OperationOutcome with the status's HTTP code.

// The FHIR-native routes, served beside the RPCs' REST mappings (docs/api.md documents
// them; internal/apidoc checks that it does).
const (
	FHIRDeidentify = "/v1/fhir/$de-identify"
	FHIRReidentify = "/v1/fhir/$re-identify"
)

// NativeRoutes are the routes of the gateway that are not an RPC's REST mapping.
var NativeRoutes = []string{FHIRDeidentify, FHIRReidentify}

const (
	fhirJSON     = "application/fhir+json"
	fhirNDJSON   = "application/fhir+ndjson"
	errorsHeader = "X-Tokenizer-Errors"
	// unrestoredHeader lists, on re-identification, the paths that could not be
	// restored (withheld, masked, redacted or generalized), by index and reason.
	unrestoredHeader = "X-Tokenizer-Unrestored"
	// ndjsonBatch is how many lines go in one stream message (one audit event).
	ndjsonBatch = 256
	// ndjsonEnvelope is room left in a message beside its one longest line.
	ndjsonEnvelope = 4 << 10
)

type fhirHandler struct {
	client   tokenizerv1.FhirServiceClient
	mux      *runtime.ServeMux
	maxBytes int64
	reverse  bool
	reject   RejectFunc
}

// refuse answers a request refused before gRPC with an OperationOutcome, after
// reporting it for the audit log like the other routes' refusals (503 when it cannot be).
func (h *fhirHandler) refuse(w http.ResponseWriter, r *http.Request, stream bool, httpStatus int, code codes.Code, msg string) {
	rej := rejectionOf(r, h.method(stream), httpStatus, code, msg)
	w.Header().Set("X-Request-Id", rej.RequestID)
	if h.reject != nil && h.reject(r.Context(), rej) != nil {
		httpStatus, msg = http.StatusServiceUnavailable, msgAuditUnavailable
	}
	outcome(w, httpStatus, msg)
}

func (h *fhirHandler) method(stream bool) string {
	name := map[[2]bool]string{
		{false, false}: "TokenizeResources", {true, false}: "DetokenizeResources",
		{false, true}: "TokenizeResourcesStream", {true, true}: "DetokenizeResourcesStream",
	}[[2]bool{h.reverse, stream}]
	return "/tokenizer.v1.FhirService/" + name
}

func (h *fhirHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	ndjson := ct == fhirNDJSON || ct == "application/x-ndjson"
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, r, ndjson, http.StatusMethodNotAllowed, codes.Unimplemented, "method not allowed: use POST")
		return
	}
	if !ndjson && ct != fhirJSON && ct != "application/json" {
		h.refuse(w, r, false, http.StatusUnsupportedMediaType, codes.InvalidArgument, "Content-Type: want application/fhir+json or application/fhir+ndjson")
		return
	}
	ctx, err := runtime.AnnotateContext(r.Context(), h.mux, r, h.method(ndjson))
	if err != nil {
		h.refuse(w, r, ndjson, http.StatusBadRequest, codes.InvalidArgument, "request metadata not accepted")
		return
	}
	q := r.URL.Query()
	r.Body = cutBody{r.Body}
	if ndjson {
		h.serveNDJSON(ctx, w, r, q)
		return
	}
	if r.ContentLength > h.maxBytes {
		// Declared larger than one message: a Bundle sent in parts, a stream from its
		// first byte (limits.read_body_timeout does not apply).
		streaming(r)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.maxBytes+1))
	if err != nil {
		httpStatus, code, msg, ok := bodyReadFailure(err)
		if !ok {
			httpStatus, code, msg = http.StatusBadRequest, codes.InvalidArgument, "request body could not be read"
		}
		h.refuse(w, r, false, httpStatus, code, msg)
		return
	}
	if int64(len(body)) > h.maxBytes {
		// Larger than one message: a Bundle goes in parts (fhirbundle.go).
		h.serveBundleParts(ctx, w, r, io.MultiReader(bytes.NewReader(body), r.Body), q)
		return
	}
	if !utf8.Valid(body) {
		h.refuse(w, r, false, http.StatusBadRequest, codes.InvalidArgument, "request body: not valid UTF-8")
		return
	}
	resp, err := h.call(ctx, q, []string{string(body)})
	if err != nil {
		grpcOutcome(w, err)
		return
	}
	setErrors(w.Header(), resp.GetErrors(), 0, headerBudget)
	setUnrestored(w.Header(), resp.GetUnrestored(), 0, headerBudget)
	if resp.GetResources()[0] == "" {
		outcome(w, http.StatusUnprocessableEntity, "the resource could not be processed: see "+errorsHeader)
		return
	}
	w.Header().Set("Content-Type", fhirJSON)
	_, _ = io.WriteString(w, resp.GetResources()[0])
}

func (h *fhirHandler) call(ctx context.Context, q map[string][]string, resources []string) (*tokenizerv1.ResourcesResponse, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if h.reverse {
		return h.client.DetokenizeResources(ctx, &tokenizerv1.DetokenizeResourcesRequest{
			Profile: get("profile"), Resources: resources, PurposeOfUse: get("purpose_of_use"), Justification: get("justification")})
	}
	return h.client.TokenizeResources(ctx, &tokenizerv1.TokenizeResourcesRequest{Profile: get("profile"), Resources: resources})
}

// serveNDJSON streams: batches of lines go out as stream messages while the answers
// are written back in order; memory holds a few batches whatever the body's length.
func (h *fhirHandler) serveNDJSON(ctx context.Context, w http.ResponseWriter, r *http.Request, q map[string][]string) {
	answerWhileReading(w, r)
	body := r.Body
	w.Header().Set("Trailer", errorsHeader+", "+unrestoredHeader)
	sc := bufio.NewScanner(body)
	// A line must fit one message with its envelope (the profile, field tags).
	sc.Buffer(make([]byte, 0, 64<<10), int(max(h.maxBytes-ndjsonEnvelope, 1024)))
	var errList listed[*tokenizerv1.ResourceError]
	badUTF8 := map[int]bool{}
	var unrestored listed[*tokenizerv1.UnrestoredPath]
	started := false
	batch := make([]string, 0, ndjsonBatch)
	// at[i] is the 0-based line of the body that batch[i] came from (blank lines
	// included), which the errors and unrestored paths name.
	at := make([]int32, 0, ndjsonBatch)
	lineNo := int32(-1)
	// A message carries at most ndjsonBatch lines and about half the message limit in
	// bytes (a longer line goes alone), so that no batch is refused for its size.
	budget, size := int(h.maxBytes/2), 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		resp, err := h.call(ctx, q, batch)
		if err != nil {
			return err
		}
		if !started {
			w.Header().Set("Content-Type", fhirNDJSON)
			started = true
		}
		for _, res := range resp.GetResources() {
			if res != "" {
				_, _ = io.WriteString(w, res+"\n")
			}
		}
		line := func(i int32) int32 {
			if i >= 0 && int(i) < len(at) {
				return at[i]
			}
			return i
		}
		for _, u := range resp.GetUnrestored() {
			u.Index = line(u.Index)
			unrestored.add(u)
		}
		for _, e := range resp.GetErrors() {
			e.Index = line(e.Index)
			if badUTF8[int(e.Index)] {
				e.Reason = "not valid UTF-8"
			}
			errList.add(e)
		}
		batch, at, size = batch[:0], at[:0], 0
		return nil
	}
	var err error
	for err == nil && sc.Scan() {
		lineNo++
		if line := strings.TrimSpace(sc.Text()); line != "" {
			if !utf8.ValidString(line) {
				// A gRPC string must be UTF-8: the line fails alone, as a non-resource
				// would, and the report says why.
				badUTF8[int(lineNo)] = true
				line = "null"
			}
			if len(batch) > 0 && size+len(line) > budget {
				if err = flush(); err != nil {
					break
				}
			}
			batch, at, size = append(batch, line), append(at, lineNo), size+len(line)
			if len(batch) == ndjsonBatch {
				err = flush()
			}
		}
	}
	if err == nil {
		// A body that could not be read (stalled, a line over the limit) fails as such:
		// the lines before it are not sent on.
		if err = sc.Err(); err == nil {
			err = flush()
		} else if httpStatus, code, msg, ok := bodyReadFailure(err); ok && !started {
			h.refuse(w, r, true, httpStatus, code, msg)
			return
		}
	}
	if err != nil && !started {
		if _, isStatus := status.FromError(err); !isStatus {
			httpStatus, code, msg := readRefusal(err)
			h.refuse(w, r, true, httpStatus, code, msg)
			return
		}
		grpcOutcome(w, err)
		return
	}
	if err != nil {
		h.abort(r, true, err)
	}
	setErrors(w.Header(), errList.items, errList.more, trailerBudget)
	setUnrestored(w.Header(), unrestored.items, unrestored.more, trailerBudget)
}

// abort ends a response whose body has started when the request fails: the failure is
// audited (a refusal, when the gRPC side did not already audit it) and the connection is
// cut without the chunked body's end, so that every client sees an error rather than a
// complete-looking answer with a trailer it may not read.
func (h *fhirHandler) abort(r *http.Request, stream bool, err error) {
	if _, isStatus := status.FromError(err); !isStatus || errors.Is(err, context.Canceled) {
		httpStatus, code, msg := readRefusal(err)
		rej := rejectionOf(r, h.method(stream), httpStatus, code, "request failed before the end of the body: "+msg)
		if h.reject != nil {
			_ = h.reject(r.Context(), rej)
		}
	}
	panic(http.ErrAbortHandler)
}

// maxListed bounds the failures and the unrestored paths a streamed response keeps: a
// stream of any length must not hold an unbounded list. The rest are counted.
const maxListed = 200

// The byte budgets of the lists: a header line may be long (clients accept about
// 100 KB), a trailer may not (Go's client refuses trailers over about 4 KB).
const (
	headerBudget  = 60 << 10
	trailerBudget = 1500
)

// listed keeps the first maxListed items and counts the others.
type listed[T any] struct {
	items []T
	more  int
}

func (l *listed[T]) add(v T) {
	if len(l.items) < maxListed {
		l.items = append(l.items, v)
		return
	}
	l.more++
}

// setUnrestored sets the unrestored-paths header (JSON, like the errors header).
func setUnrestored(h http.Header, list []*tokenizerv1.UnrestoredPath, more, budget int) {
	errs := make([]*tokenizerv1.ResourceError, len(list))
	for i, u := range list {
		errs[i] = &tokenizerv1.ResourceError{Index: u.GetIndex(), ResourceType: u.GetResourceType(), Path: u.GetPath(), Reason: u.GetReason()}
	}
	if v := issueList(errs, more, budget); v != "" {
		h.Set(unrestoredHeader, v)
	}
}

// setErrors sets the errors header.
func setErrors(h http.Header, list []*tokenizerv1.ResourceError, more, budget int) {
	if v := issueList(list, more, budget); v != "" {
		h.Set(errorsHeader, v)
	}
}

// issueList is a JSON array of the items that fit in budget bytes, then, if any were
// left out, one with index -1 that counts them; "" when there is nothing to say.
func issueList(list []*tokenizerv1.ResourceError, more, budget int) string {
	type item struct {
		Index        int32  `json:"index"`
		ResourceType string `json:"resource_type,omitempty"`
		Path         string `json:"path,omitempty"`
		Reason       string `json:"reason"`
	}
	var b bytes.Buffer
	b.WriteByte('[')
	n := 0
	for _, e := range list {
		raw, _ := json.Marshal(item{e.GetIndex(), e.GetResourceType(), e.GetPath(), e.GetReason()})
		if b.Len()+len(raw)+64 > budget {
			more += len(list) - n
			break
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.Write(raw)
		n++
	}
	if more > 0 {
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"index":-1,"reason":"%d more not listed"}`, more)
	}
	if b.Len() == 1 {
		return ""
	}
	b.WriteByte(']')
	return b.String()
}

func grpcOutcome(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	outcome(w, runtime.HTTPStatusFromCode(st.Code()), st.Message())
}

// outcome answers a FHIR OperationOutcome with one error issue.
func outcome(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", fhirJSON)
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"resourceType": "OperationOutcome",
		"issue":        []map[string]any{{"severity": "error", "code": "processing", "diagnostics": msg}},
	})
}

// answerWhileReading prepares an HTTP/1.x answer that starts before the request body is
// read to its end. Left alone, net/http would first read ahead and discard up to 256 KiB
// of the unread body (NDJSON lines lost without a trace when the body is chunked or has
// less than that left), or, full duplex, race its own background read. An answer that
// closes the connection is neither: the server reads nothing of the body itself, and the
// handler keeps reading it. HTTP/2 streams have no such issue (nor Connection headers).
// Such a body is a stream's: only limits.read_idle_timeout bounds it, not the total time
// of limits.read_body_timeout.
func answerWhileReading(w http.ResponseWriter, r *http.Request) {
	streaming(r)
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

// cutBody tells a body whose connection ended before it did (errBodyCut) from JSON that
// ends too early: both read as io.ErrUnexpectedEOF to a decoder.
type cutBody struct{ io.ReadCloser }

func (b cutBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = errBodyCut
	}
	return n, err
}
