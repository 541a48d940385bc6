package gateway

import (
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// TestRoutesMatchTheServices: every REST route read from the OpenAPI document names a
// method of the tokenizer.v1 services, and every unary and streaming method has one.
func TestRoutesMatchTheServices(t *testing.T) {
	t.Parallel()
	rts, err := routes()
	require.NoError(t, err)
	methods := map[string]bool{}
	for _, sd := range []grpc.ServiceDesc{tokenizerv1.TokenizerService_ServiceDesc, tokenizerv1.AuditService_ServiceDesc, tokenizerv1.FhirService_ServiceDesc, tokenizerv1.SubjectService_ServiceDesc, tokenizerv1.GrantService_ServiceDesc} {
		for _, m := range sd.Methods {
			methods["/"+sd.ServiceName+"/"+m.MethodName] = false
		}
		for _, st := range sd.Streams {
			methods["/"+sd.ServiceName+"/"+st.StreamName] = false
		}
	}
	for path, rt := range rts {
		for verb, m := range rt {
			_, ok := methods[m]
			assert.True(t, ok, "%s %s names %s", verb, path, m)
			methods[m] = true
		}
	}
	for m, routed := range methods {
		assert.True(t, routed, "%s has a REST route", m)
	}
	assert.Equal(t, "POST", rts["/v1/tokenize"].allow())
	assert.Equal(t, "GET", rts["/v1/audit/export"].allow())
	assert.Equal(t, exportMethod, rts["/v1/audit/export"]["GET"])
}

// TestDecodeErrorNamesFieldsNotValues: only an unknown field's name survives, when it
// looks like a field name; everything else is the fixed message.
func TestDecodeErrorNamesFieldsNotValues(t *testing.T) {
	t.Parallel()
	c := &safeJSON{JSONPb: &runtime.JSONPb{UnmarshalOptions: protojson.UnmarshalOptions{}}, maxBytes: 100}
	tests := []struct{ name, body, want string }{
		{"unknown field", `{"itemz":[]}`, `request body: unknown field "itemz" for this method`},
		{"nested unknown field", `{"items":[{"class":"ssn","colour":"321-54-9876"}]}`, `unknown field "colour"`},
		{"field that is a value", `{"321-54-9876":1}`, errBadJSON.Error()},
		{"long field", `{"` + strings.Repeat("a", 65) + `":1}`, errBadJSON.Error()},
		{"wrong type", `{"items":[{"value":321549876}]}`, errBadJSON.Error()},
		{"truncated", `{"items":[{"value":"321-54-9876"`, errBadJSON.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Unmarshal([]byte(tt.body), &tokenizerv1.TokenizeRequest{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "321-54-9876")
			assert.NotContains(t, err.Error(), "321549876")
		})
	}
	tooBig := decodeError(&http.MaxBytesError{Limit: 100}, 100)
	assert.Equal(t, "request body exceeds the limit of 100 bytes", tooBig.Error())
}

// FuzzDecodeError: whatever the body, the caller sees one of the fixed messages, or an
// unknown field's name, never other input.
func FuzzDecodeError(f *testing.F) {
	for _, s := range []string{`{"itemz":[]}`, `{"items":[{"value":"x"}]}`, `{"a":`, `[]`, `{"items":[{"class":1}]}`} {
		f.Add(s)
	}
	c := &safeJSON{JSONPb: &runtime.JSONPb{}, maxBytes: 1 << 20}
	named := regexp.MustCompile(`^request body: unknown field "([A-Za-z_][A-Za-z0-9_]{0,63})" for this method`)
	f.Fuzz(func(t *testing.T, body string) {
		err := c.Unmarshal([]byte(body), &tokenizerv1.DetokenizeRequest{})
		if err == nil || errors.Is(err, io.EOF) { // an empty body is an empty request
			return
		}
		msg := err.Error()
		if msg == errBadJSON.Error() {
			return
		}
		m := named.FindStringSubmatch(msg)
		if m == nil {
			t.Fatalf("unexpected message %q", msg)
		}
		if !strings.Contains(body, `"`+m[1]+`"`) && !strings.Contains(body, m[1]) {
			t.Fatalf("named field %q is not in the body", m[1])
		}
	})
}
