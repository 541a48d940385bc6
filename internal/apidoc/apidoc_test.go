package apidoc

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

func readReference(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/api.md")
	require.NoError(t, err)
	return string(b)
}

// TestRPCsFromDescriptors checks that the descriptors are read, REST bindings included.
func TestRPCsFromDescriptors(t *testing.T) {
	rpcs := RPCs()
	byName := map[string][]Route{}
	for _, r := range rpcs {
		byName[r.Name] = r.Routes
	}
	assert.GreaterOrEqual(t, len(rpcs), 22, "TokenizerService, AuditService, FhirService, SubjectService and GrantService")
	assert.Equal(t, []Route{{"POST", "/v1/tokenize"}}, byName["tokenizer.v1.TokenizerService/Tokenize"])
	assert.Equal(t, []Route{{"GET", "/v1/classes"}}, byName["tokenizer.v1.TokenizerService/ListClasses"])
	assert.Equal(t, []Route{{"GET", "/v1/audit/export"}}, byName["tokenizer.v1.AuditService/ExportAudit"])
	for name, routes := range byName {
		assert.NotEmpty(t, routes, "%s has a REST binding", name)
	}
}

// TestAPIReferenceMatchesProtos is the drift check: every RPC and REST route of
// tokenizer.v1 is documented in docs/api.md, with a curl and a grpcurl example, and
// the document names no route or RPC that does not exist.
func TestAPIReferenceMatchesProtos(t *testing.T) {
	for _, p := range Check(readReference(t), RPCs()) {
		t.Error(p)
	}
}

// TestCheckFindsDrift feeds Check the real document with the protos changed: a new RPC,
// a new route of an existing RPC, a route removed, an RPC removed.
func TestCheckFindsDrift(t *testing.T) {
	doc := readReference(t)
	rpcs := RPCs()
	require.Empty(t, Check(doc, rpcs))

	added := append(append([]RPC(nil), rpcs...), RPC{Name: "tokenizer.v1.TokenizerService/Retokenize", Routes: []Route{{"POST", "/v1/retokenize"}}})
	assert.Contains(t, Check(doc, added), `tokenizer.v1.TokenizerService/Retokenize: no section "### tokenizer.v1.TokenizerService/Retokenize"`)

	rebound := cloneRPCs(rpcs)
	for i := range rebound {
		if rebound[i].Name == "tokenizer.v1.TokenizerService/ListClasses" {
			rebound[i].Routes = append(rebound[i].Routes, Route{"GET", "/v1/classes/{name}"})
		}
	}
	problems := Check(doc, rebound)
	assert.Contains(t, problems, "tokenizer.v1.TokenizerService/ListClasses: route `GET /v1/classes/{name}` not declared in its section")
	assert.Contains(t, problems, "tokenizer.v1.TokenizerService/ListClasses: no curl example of GET /v1/classes/{name}")

	var removed []RPC
	for _, r := range rpcs {
		if r.Name != "tokenizer.v1.TokenizerService/DeleteTokens" {
			removed = append(removed, r)
		}
	}
	problems = Check(doc, removed)
	assert.Contains(t, problems, `section "tokenizer.v1.TokenizerService/DeleteTokens" documents an RPC the protos do not have`)
	assert.Contains(t, problems, "the document mentions /v1/tokens:delete, which no RPC binds")
	assert.Contains(t, problems, "the document names RPC tokenizer.v1.TokenizerService/DeleteTokens, which the protos do not have")

	noExample := strings.Replace(doc, "127.0.0.1:9090 tokenizer.v1.AuditService/VerifyAudit", "127.0.0.1:9090 list", 1)
	assert.Contains(t, Check(noExample, rpcs), "tokenizer.v1.AuditService/VerifyAudit: no grpcurl example")
	wrongPath := doc + "\nAlso `curl http://127.0.0.1:8080/v1/tokenise`.\n"
	assert.Contains(t, Check(wrongPath, rpcs), "the document mentions /v1/tokenise, which no RPC binds")
}

func cloneRPCs(in []RPC) []RPC {
	out := make([]RPC, len(in))
	for i, r := range in {
		out[i] = RPC{Name: r.Name, Routes: append([]Route(nil), r.Routes...)}
	}
	return out
}

func TestTemplateRE(t *testing.T) {
	for _, tt := range []struct {
		tmpl, path string
		want       bool
	}{
		{"/v1/tokenize", "/v1/tokenize", true},
		{"/v1/tokenize", "/v1/tokenize:stream", false},
		{"/v1/classes/{name}", "/v1/classes/ssn", true},
		{"/v1/classes/{name}", "/v1/classes/ssn/x", false},
		{"/v1/{name=files/**}", "/v1/files/a/b", false}, // only the simple forms are used here
		{"/v1/*/x", "/v1/a/x", true},
	} {
		assert.Equal(t, tt.want, templateRE(tt.tmpl).MatchString(tt.path), "%s ~ %s", tt.tmpl, tt.path)
	}
}

// TestOpenAPIInfo checks the info block of the OpenAPI document the gateway serves at
// /openapi.json (embedded from the generated file).
func TestOpenAPIInfo(t *testing.T) {
	var doc struct {
		Swagger string `json:"swagger"`
		Info    struct {
			Title, Version, Description string
			License                     struct{ Name, URL string }
		} `json:"info"`
		Paths map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(tokenizerv1.OpenAPI, &doc))
	assert.Equal(t, "2.0", doc.Swagger)
	assert.Equal(t, "tokenizer API", doc.Info.Title)
	assert.Equal(t, "v1", doc.Info.Version)
	assert.Equal(t, "Apache-2.0", doc.Info.License.Name)
	assert.Contains(t, doc.Info.Description, "docs/api.md")
	// Every REST route is in the document too.
	for _, r := range RPCs() {
		for _, rt := range r.Routes {
			ops, ok := doc.Paths[rt.Path]
			if assert.True(t, ok, "OpenAPI has %s", rt.Path) {
				assert.Contains(t, ops, strings.ToLower(rt.Method), "OpenAPI has %s", rt)
			}
		}
	}
}
