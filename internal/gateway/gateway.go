// Package gateway is the REST face of the API: grpc-gateway's mapping of tokenizer.v1
// (proto field names on output, both spellings on input, values never echoed in
// errors) over a gRPC connection to the service's in-memory server, so that every
// interceptor runs for REST exactly as for gRPC; the HTTP conventions around it (413,
// 405 with Allow, unknown fields named, refusals before gRPC reported for the audit
// log); and the OpenAPI document.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/authn"
	"github.com/phivault/tokenizer/internal/grpcx"
	"github.com/phivault/tokenizer/internal/warehouse"
)

// safeJSON is the gateway's JSON codec: proto field names (snake_case) on output, both
// spellings accepted on input. Decoding errors are replaced by a fixed message, because
// protojson's errors quote the offending input, which may be a value.
type safeJSON struct {
	*runtime.JSONPb
	maxBytes int64
}

var errBadJSON = errors.New("request body is not valid JSON for this method (check field names, types and quoting)")

func (m *safeJSON) sanitize(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return decodeError(err, m.maxBytes)
}

// Marshal compacts protojson's output: protojson varies its whitespace on purpose from
// build to build, and clients (and the README) deserve one stable form.
func (m *safeJSON) Marshal(v any) ([]byte, error) {
	out, err := m.JSONPb.Marshal(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, out); err != nil {
		return out, nil
	}
	return buf.Bytes(), nil
}

// NewEncoder writes compact JSON, one value per call.
func (m *safeJSON) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		out, err := m.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(append(out, m.Delimiter()...))
		return err
	})
}

func (m *safeJSON) Unmarshal(data []byte, v any) error {
	return m.sanitize(m.JSONPb.Unmarshal(data, v))
}

func (m *safeJSON) NewDecoder(r io.Reader) runtime.Decoder {
	d := m.JSONPb.NewDecoder(r)
	st := stateOf(r)
	return runtime.DecoderFunc(func(v any) error {
		err := m.sanitize(d.Decode(v))
		if err != nil && !errors.Is(err, io.EOF) && st != nil {
			st.failed(err)
		}
		if err == nil && st != nil && st.messages != nil {
			st.messages.decodedOne()
		}
		return err
	})
}

func headerIn(key string) (string, bool) {
	k := textproto.CanonicalMIMEHeaderKey(key)
	if k == "X-Request-Id" {
		return "x-request-id", true
	}
	if k == "X-Tokenizer-On-Behalf-Of" {
		return "x-tokenizer-on-behalf-of", true
	}
	// Never let a client set the identity the gateway forwards.
	if strings.HasSuffix(strings.ToLower(k), authn.IdentityHeader) {
		return "", false
	}
	return runtime.DefaultHeaderMatcher(key)
}

// forwardIdentity passes the REST client's verified certificate identity to the
// in-memory gRPC server.
func forwardIdentity(_ context.Context, r *http.Request) metadata.MD {
	if r.TLS == nil {
		return nil
	}
	id, err := authn.IdentityOf(r.TLS)
	if err != nil {
		return nil
	}
	return metadata.Pairs(authn.IdentityHeader, id)
}

func headerOut(key string) (string, bool) {
	if key == "x-request-id" {
		return "X-Request-Id", true
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// restGateway is the REST handler: grpc-gateway's mux and the HTTP conventions
// around it (conventions.go).
type restGateway struct {
	mux    *runtime.ServeMux
	routes map[string]route
	limit  int64
	reject RejectFunc
}

// New returns the REST handler over conn (a connection to the in-memory gRPC server,
// which runs the same interceptors, so that authentication, metrics, authorization and
// audit run for REST exactly as for gRPC). Bodies are limited to maxBytes (413 over
// it); a method a route does not serve is 405 with Allow; requests refused before
// gRPC are reported to WithRejections' function.
func New(ctx context.Context, conn *grpc.ClientConn, maxBytes int, opts ...Option) (http.Handler, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	rts, err := routes()
	if err != nil {
		return nil, err
	}
	g := &restGateway{routes: rts, limit: int64(maxBytes), reject: o.reject}
	codec := &safeJSON{
		JSONPb: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{},
		},
		maxBytes: int64(maxBytes),
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, codec),
		runtime.WithMarshalerOption(exportMIME, exportMarshaler{&runtime.HTTPBodyMarshaler{Marshaler: codec}}),
		runtime.WithErrorHandler(g.errorHandler),
		runtime.WithRoutingErrorHandler(g.routingErrorHandler),
		runtime.WithStreamErrorHandler(g.streamErrorHandler),
		runtime.WithIncomingHeaderMatcher(headerIn),
		runtime.WithOutgoingHeaderMatcher(headerOut),
		runtime.WithMetadata(forwardIdentity),
	)
	if err := tokenizerv1.RegisterTokenizerServiceHandler(ctx, gw, conn); err != nil {
		return nil, err
	}
	if err := tokenizerv1.RegisterAuditServiceHandler(ctx, gw, conn); err != nil {
		return nil, err
	}
	if err := tokenizerv1.RegisterFhirServiceHandler(ctx, gw, conn); err != nil {
		return nil, err
	}
	if err := tokenizerv1.RegisterSubjectServiceHandler(ctx, gw, conn); err != nil {
		return nil, err
	}
	if err := tokenizerv1.RegisterGrantServiceHandler(ctx, gw, conn); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(tokenizerv1.OpenAPI)
	})
	fc := tokenizerv1.NewFhirServiceClient(conn)
	mux.Handle(FHIRDeidentify, &fhirHandler{client: fc, mux: gw, maxBytes: int64(maxBytes), reject: o.reject})
	mux.Handle(FHIRReidentify, &fhirHandler{client: fc, mux: gw, maxBytes: int64(maxBytes), reverse: true, reject: o.reject})
	// Warehouse remote functions use the same in-memory client: authorized and audited alike.
	mux.Handle(warehouse.Prefix, warehouse.New(tokenizerv1.NewTokenizerServiceClient(conn), warehouse.Options{
		Metadata: forwardIdentity, MaxBodyBytes: int64(maxBytes), MaxItems: o.maxItems, Refused: warehouseRefused(o.reject)}))
	g.mux = gw
	mux.HandleFunc("/", g.handler)
	return encodeOnBehalfOf(mux), nil
}

// encodeOnBehalfOf percent-encodes an X-Tokenizer-On-Behalf-Of header that is not
// printable ASCII, so that a name in any script reaches the audit event (gRPC metadata
// is ASCII; the service decodes).
func encodeOnBehalfOf(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A value in printable ASCII passes as it is (it may be percent-encoded already).
		if v := r.Header.Values("X-Tokenizer-On-Behalf-Of"); len(v) > 0 && strings.ContainsFunc(v[0], func(c rune) bool { return c < 0x20 || c > 0x7e }) {
			r.Header.Set("X-Tokenizer-On-Behalf-Of", grpcx.EncodeOnBehalfOf(v[0]))
		}
		next.ServeHTTP(w, r)
	})
}

// warehouseRefused reports the calls the warehouse handler refuses before the service
// as rejections of the Tokenize or Detokenize method, like the other routes' refusals.
func warehouseRefused(reject RejectFunc) func(*http.Request, string, int, string) error {
	if reject == nil {
		return nil
	}
	return func(r *http.Request, op string, httpStatus int, reason string) error {
		method := "/tokenizer.v1.TokenizerService/Tokenize"
		if op == "detokenize" {
			method = "/tokenizer.v1.TokenizerService/Detokenize"
		}
		return reject(r.Context(), rejectionOf(r, method, httpStatus, codes.InvalidArgument, reason))
	}
}
