package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/authn"
	"github.com/phivault/tokenizer/internal/grpcx"
)

// Rejection is a REST request the gateway refused before it reached gRPC: a body that
// is not valid JSON for the method, names an unknown field or exceeds the size limit,
// or an HTTP method the route does not serve. Such requests never meet the gRPC
// chain, so the gateway reports them itself, for the audit log.
type Rejection struct {
	// Method is the gRPC method of the route, e.g. /tokenizer.v1.TokenizerService/Tokenize.
	Method string
	// Caller is the identity of the verified client certificate ("" without one).
	Caller        string
	ClientAddress string
	RequestID     string
	Code          codes.Code
	HTTPStatus    int
	// Reason is caller-safe: it names a field or a limit, never a value.
	Reason string
}

// RejectFunc records a rejection (the server appends an audit event). When it fails,
// the client gets UNAVAILABLE (503) instead of the rejection.
type RejectFunc func(ctx context.Context, r Rejection) error

// Option adjusts New.
type Option func(*options)

type options struct {
	reject   RejectFunc
	maxItems int
}

// WithRejections has f record every request the gateway refuses before gRPC.
func WithRejections(f RejectFunc) Option { return func(o *options) { o.reject = f } }

// WithMaxItems bounds the rows of one warehouse call sent to the service in a request.
func WithMaxItems(n int) Option { return func(o *options) { o.maxItems = n } }

// route is one REST path: the gRPC method behind each HTTP method it serves.
type route map[string]string

// routes reads the REST mapping from the OpenAPI document (generated from the protos'
// google.api.http rules, so it cannot disagree with the mux): path → HTTP method →
// gRPC method. Operation ids are Service_Method in package tokenizer.v1.
func routes() (map[string]route, error) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(tokenizerv1.OpenAPI, &doc); err != nil {
		return nil, fmt.Errorf("gateway: read the OpenAPI document: %w", err)
	}
	out := map[string]route{}
	for path, ops := range doc.Paths {
		r := route{}
		for method, op := range ops {
			svc, name, ok := strings.Cut(op.OperationID, "_")
			if !ok {
				return nil, fmt.Errorf("gateway: operation id %q is not Service_Method", op.OperationID)
			}
			r[strings.ToUpper(method)] = "/tokenizer.v1." + svc + "/" + name
		}
		out[path] = r
	}
	return out, nil
}

// allow is the Allow header of a route.
func (r route) allow() string {
	var ms []string
	for m := range r {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	return strings.Join(ms, ", ")
}

// requestState follows one REST request through the gateway: whether its body went
// over the limit, the decoding error the codec met, and whether the request was
// already reported.
type requestState struct {
	method   string // gRPC method of the route
	limit    int64
	reported bool
	req      *http.Request

	messages *messageLimiter // a stream's body: bounded per message
	bodyErr  error           // the first read of the body that failed (under mu)

	// Set by the codec, which decodes a stream's body in a goroutine of its own.
	mu      sync.Mutex
	tooBig  bool
	decode  error
	decoded chan struct{} // closed when decode is set
}

func newRequestState(method string, limit int64) *requestState {
	return &requestState{method: method, limit: limit, decoded: make(chan struct{})}
}

// failed records the first decoding error.
func (s *requestState) failed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.decode == nil {
		s.decode = err
		close(s.decoded)
	}
}

// answer is the HTTP status and gRPC code of a decoding error: 413 for a body over the
// limit, 408 (DEADLINE_EXCEEDED) for one that stopped arriving, else 400.
func (s *requestState) answer() (int, codes.Code) {
	decode, tooBig := s.result()
	switch {
	case tooBig:
		return http.StatusRequestEntityTooLarge, codes.InvalidArgument
	case isStall(decode):
		return http.StatusRequestTimeout, codes.DeadlineExceeded
	case decode == errBodyCut:
		return statusClientClosed, codes.Canceled
	}
	return http.StatusBadRequest, codes.InvalidArgument
}

// statusClientClosed is the answer (and the audited HTTP status) of a request whose
// client went away, as grpc-gateway answers CANCELLED.
const statusClientClosed = 499

// bodyFailure is the caller-safe error of a body whose reading failed after its
// message decoded (grpc-gateway reads a unary body to its end after decoding it, and
// net/http cancels the request when that read fails): nil when none did.
func (s *requestState) bodyFailure() error {
	s.mu.Lock()
	err := s.bodyErr
	s.mu.Unlock()
	switch {
	case err == nil:
		return nil
	case isTimeout(err):
		return stallOf(err)
	case err == errBodyCut:
		return errBodyCut
	}
	return nil
}

// result returns the decoding error and whether the body went over the limit.
func (s *requestState) result() (error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decode, s.tooBig
}

type stateKey struct{}

func stateFrom(ctx context.Context) *requestState {
	s, _ := ctx.Value(stateKey{}).(*requestState)
	return s
}

// body is a request body bounded by the limit, which remembers hitting it.
type body struct {
	io.ReadCloser
	st *requestState
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == nil || err == io.EOF {
		return n, err
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		b.st.mu.Lock()
		b.st.tooBig = true
		b.st.mu.Unlock()
	case errors.Is(err, io.ErrUnexpectedEOF):
		// The connection ended inside the body (before its declared length or last
		// chunk): the client went away, the body is not malformed.
		err = errBodyCut
	}
	b.st.mu.Lock()
	if b.st.bodyErr == nil {
		b.st.bodyErr = err
	}
	b.st.mu.Unlock()
	return n, err
}

// errBodyCut is the read error of a body whose connection ended before the body did.
var errBodyCut = errors.New("request body: the connection closed before the end of the body")

// stateOf is the state of the request whose body r is, if it is one.
func stateOf(r io.Reader) *requestState {
	if b, ok := r.(*body); ok {
		return b.st
	}
	return nil
}

// errStalled is what the codec returns for a body that stopped arriving (ReadIdle).
var errStalled = errors.New("request body: nothing arrived within limits.read_idle_timeout; the request is cut off")

// stallOf is the caller-safe error of a read that timed out: the body stopped
// arriving, or (errBodyTooSlow) was not complete in time.
func stallOf(err error) error {
	var slow errBodyTooSlow
	if errors.As(err, &slow) {
		return slow
	}
	return errStalled
}

// isStall reports whether err is one of stallOf's.
func isStall(err error) bool {
	var slow errBodyTooSlow
	return err == errStalled || errors.As(err, &slow)
}

// isTimeout reports whether err is a read that timed out.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errTooBig is what the codec returns for a body over the limit.
type errTooBig struct{ limit int64 }

func (e errTooBig) Error() string {
	return fmt.Sprintf("request body exceeds the limit of %d bytes", e.limit)
}

var unknownFieldRE = regexp.MustCompile(`unknown field "([A-Za-z_][A-Za-z0-9_]{0,63})"`)

// decodeError is the caller-safe form of a decoding error: protojson quotes the
// offending input, which may be a value, so only an unknown field's name (when it
// looks like a field name) survives.
func decodeError(err error, limit int64) error {
	var msgTooBig errMessageTooBig
	if errors.As(err, &msgTooBig) {
		return msgTooBig
	}
	if errors.Is(err, errBodyCut) {
		return errBodyCut
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errTooBig{limit: limit}
	}
	if isTimeout(err) {
		return stallOf(err)
	}
	if m := unknownFieldRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("request body: unknown field %q for this method (field names are the proto names, e.g. purpose_of_use, or their lowerCamel JSON names)", m[1])
	}
	return errBadJSON
}

// handler wraps the grpc-gateway mux: it refuses bodies declared over the limit
// before reading them, bounds every body, and reports a decoding error that never
// became a response of its own (a stream's request line that does not decode ends the
// stream early; the gRPC server sees only a stream that ends).
func (g *restGateway) handler(w http.ResponseWriter, r *http.Request) {
	rt, known := g.routes[r.URL.Path]
	st := newRequestState(rt[r.Method], g.limit)
	stream := strings.HasSuffix(rt[r.Method], "Stream")
	if known && !stream && r.ContentLength > g.limit {
		g.refuse(w, r, st, http.StatusRequestEntityTooLarge, codes.InvalidArgument, errTooBig{limit: g.limit}.Error())
		return
	}
	if stream {
		// A stream's answers start while its body is still being read, and its body is
		// any number of messages, each bounded (not the body).
		answerWhileReading(w, r)
		st.messages = &messageLimiter{ReadCloser: r.Body, limit: g.limit}
		r.Body = &body{ReadCloser: st.messages, st: st}
	} else {
		r.Body = &body{ReadCloser: http.MaxBytesReader(w, r.Body, g.limit), st: st}
	}
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	st.req = r
	r.Header.Del("Accept")
	if r.Header.Get("Content-Type") == exportMIME {
		r.Header.Del("Content-Type")
	}
	if rt[r.Method] == exportMethod {
		r.Header.Set("Accept", exportMIME)
	}
	g.mux.ServeHTTP(w, r)
	if decode, _ := st.result(); decode != nil && !st.reported {
		g.endStream(w, r, st, decode)
	}
}

// endStream reports a stream's request line that did not decode, and ends the
// response with the error line a failed stream ends with ({"error": status}): the
// lines before it were answered, the status is already 200.
func (g *restGateway) endStream(w http.ResponseWriter, r *http.Request, st *requestState, decode error) {
	s := g.reportStream(r, st, decode)
	line, _ := json.Marshal(map[string]any{"error": map[string]any{"code": int(s.Code()), "message": s.Message()}})
	_, _ = w.Write(append(line, '\n'))
}

// reportStream reports a stream's request body that failed (decode) and returns the
// status its error line carries.
func (g *restGateway) reportStream(r *http.Request, st *requestState, decode error) *status.Status {
	st.reported = true
	httpStatus, code := st.answer()
	msg := decode.Error()
	if g.reject != nil {
		if err := g.reject(r.Context(), g.rejection(r, st, httpStatus, code, msg)); err != nil {
			code, msg = codes.Unavailable, msgAuditUnavailable
		}
	}
	return status.New(code, msg)
}

// streamErrorHandler chooses the error line of a REST stream that fails after its
// answer started. When the request body failed (a line that does not decode, a body
// that stopped arriving), the stream's own error (cancelled: net/http cancels the
// request when its body cannot be read) is only the consequence: the body's error is
// reported and is the one line. The decoding goroutine records it just after the
// cancellation, so a cancelled stream waits a moment for it.
func (g *restGateway) streamErrorHandler(ctx context.Context, err error) *status.Status {
	st := stateFrom(ctx)
	if st == nil || st.reported || st.req == nil {
		return runtime.DefaultStreamErrorHandler(ctx, err)
	}
	if c := status.Code(err); c == codes.Canceled || errors.Is(err, context.Canceled) {
		select {
		case <-st.decoded:
		case <-time.After(streamDecodeWait):
		}
	}
	if decode, _ := st.result(); decode != nil {
		return g.reportStream(st.req, st, decode)
	}
	return runtime.DefaultStreamErrorHandler(ctx, err)
}

// streamDecodeWait bounds the wait for a cancelled stream's decoding error.
const streamDecodeWait = 200 * time.Millisecond

// errorHandler answers a decoding error as the rejection it is (413 for a body over
// the limit, 400 naming an unknown field), reported before the answer leaves; any
// other error comes from gRPC and is answered as grpc-gateway does.
func (g *restGateway) errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	st := stateFrom(r.Context())
	if st == nil || st.reported {
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
		return
	}
	decode, _ := st.result()
	if decode == nil && status.Code(err) == codes.Canceled {
		// The message decoded, then the rest of the body failed and cancelled the call:
		// the body's failure is the answer (and is audited), not the cancellation.
		if failed := st.bodyFailure(); failed != nil {
			st.failed(failed)
			decode = failed
			err = status.Error(codes.InvalidArgument, failed.Error())
		}
	}
	if decode == nil || status.Convert(err).Message() != decode.Error() {
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
		return
	}
	httpStatus, code := st.answer()
	g.refuse(w, r, st, httpStatus, code, decode.Error())
}

// routingErrorHandler answers an HTTP method the route does not serve with 405 and
// Allow (grpc-gateway's default is 501), reported like any rejection.
func (g *restGateway) routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	rt, known := g.routes[r.URL.Path]
	if httpStatus != http.StatusMethodNotAllowed || !known {
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
		return
	}
	st := stateFrom(r.Context())
	if st == nil {
		st = newRequestState("", 0)
	}
	allowed := rt.allow()
	st.method = rt[strings.Split(allowed, ", ")[0]] // the operation of the path
	w.Header().Set("Allow", allowed)
	g.refuse(w, r, st, http.StatusMethodNotAllowed, codes.Unimplemented,
		fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, allowed))
}

// refuse reports the rejection and answers it as {"code", "message"} with the HTTP
// status; if the report cannot be written, 503 instead.
func (g *restGateway) refuse(w http.ResponseWriter, r *http.Request, st *requestState, httpStatus int, code codes.Code, reason string) {
	rej := g.rejection(r, st, httpStatus, code, reason)
	st.reported = true
	w.Header().Set("X-Request-Id", rej.RequestID)
	if g.reject != nil {
		if err := g.reject(r.Context(), rej); err != nil {
			httpStatus, code, reason = http.StatusServiceUnavailable, codes.Unavailable, msgAuditUnavailable
		}
	}
	out, _ := json.Marshal(map[string]any{"code": int(code), "message": reason})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(out)
}

const msgAuditUnavailable = "audit log unavailable: the request was not completed"

func (g *restGateway) rejection(r *http.Request, st *requestState, httpStatus int, code codes.Code, reason string) Rejection {
	return rejectionOf(r, st.method, httpStatus, code, reason)
}

// rejectionOf describes request r, refused before gRPC, for method.
func rejectionOf(r *http.Request, method string, httpStatus int, code codes.Code, reason string) Rejection {
	caller := ""
	if r.TLS != nil {
		if id, err := authn.IdentityOf(r.TLS); err == nil {
			caller = id
		}
	}
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	return Rejection{
		Method: method, Caller: caller, ClientAddress: addr, RequestID: grpcx.ParseRequestID(r.Header.Get("X-Request-Id")),
		Code: code, HTTPStatus: httpStatus, Reason: reason,
	}
}

// exportMethod is the one method whose REST body is the bytes of google.api.HttpBody
// messages (an audit export), served with their own Content-Type and no delimiter.
const exportMethod = "/tokenizer.v1.AuditService/ExportAudit"

// exportMIME selects the export marshaler inside the gateway; never a client's.
const exportMIME = "application/x-tokenizer-export"

// exportMarshaler writes HttpBody chunks as they are, with their Content-Type, and
// nothing between them (the default stream delimiter, a newline, would land inside
// records at every chunk boundary).
type exportMarshaler struct{ *runtime.HTTPBodyMarshaler }

func (exportMarshaler) Delimiter() []byte { return nil }

// messageLimiter bounds a REST stream's body per message instead of in total: a stream
// is any number of request messages, one per line. A line longer than limit fails the
// stream (errMessageTooBig), and so do more than 2×limit bytes read since the last
// message decoded (a value spread over many lines, which the decoder would otherwise
// buffer whole; the decoder's read-ahead of the next line counts there too).
type messageLimiter struct {
	io.ReadCloser
	limit  int64
	line   int64 // bytes since the last newline
	window int64 // bytes since the last message decoded
	over   bool
}

// errMessageTooBig is the read error of a stream line over the limit. It is a
// *http.MaxBytesError too, for the handling of bodies over the limit.
type errMessageTooBig struct{ limit int64 }

func (e errMessageTooBig) Error() string {
	return fmt.Sprintf("request body: a stream's request message (line) exceeds the limit of %d bytes (limits.max_message_bytes)", e.limit)
}

func (e errMessageTooBig) Unwrap() error { return &http.MaxBytesError{Limit: e.limit} }

func (l *messageLimiter) Read(p []byte) (int, error) {
	if l.over {
		return 0, errMessageTooBig{limit: l.limit}
	}
	n, err := l.ReadCloser.Read(p)
	// What goes past a bound is not handed on: the decoder must not complete the
	// message, it gets this error on its next read instead.
	keep := n
	for off := 0; off < n; {
		i := bytes.IndexByte(p[off:n], '\n')
		seg := n - off
		if i >= 0 {
			seg = i
		}
		if l.line+int64(seg) > l.limit {
			keep, l.over = off+int(l.limit-l.line), true
			break
		}
		if i < 0 {
			l.line += int64(seg)
			break
		}
		l.line, off = 0, off+i+1
	}
	if l.window+int64(keep) > 2*l.limit {
		keep, l.over = int(2*l.limit-l.window), true
	}
	l.window += int64(keep)
	if l.over {
		return keep, nil
	}
	return n, err
}

// decodedOne restarts the window: a message was decoded.
func (l *messageLimiter) decodedOne() { l.window = 0 }
