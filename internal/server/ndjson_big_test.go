package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/config"
)

// An NDJSON body far larger than what net/http reads ahead of an answer (256 KiB) is
// answered line for line, whether its length is declared or it comes chunked: the
// answer starts while the body is still arriving, and no line may be dropped.
func TestFHIRNDJSONLargeBodyLosesNoLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	const n = 6000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"resourceType":"Patient","id":"big-%05d","gender":"other","name":[{"family":"Bigfamily","given":["Line%05d"]}]}`+"\n", i, i)
	}
	body := b.String()
	require.Greater(t, len(body), 600<<10)
	for name, rd := range map[string]func() io.Reader{
		"length":  func() io.Reader { return strings.NewReader(body) },
		"chunked": func() io.Reader { return io.MultiReader(strings.NewReader(body)) },
	} {
		req, err := http.NewRequest("POST", "http://"+r.addrs.HTTP+"/v1/fhir/$de-identify?profile=safe_harbor", rd())
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/fhir+ndjson")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err, name)
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err, name)
		require.Equal(t, http.StatusOK, resp.StatusCode, name)
		assert.Equal(t, n, strings.Count(string(out), "\n"), "%s: one answer per line", name)
		assert.Empty(t, resp.Trailer.Get("X-Tokenizer-Errors"), name)
		assert.NotContains(t, string(out), "Bigfamily", name)
	}
}

// The same for a Bundle larger than the message limit sent chunked: it goes in parts,
// every entry answered.
func TestFHIRLargeBundleChunkedLosesNoEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mutate = func(c *config.Config) { c.Limits.MaxMessageBytes = 64 << 10 }
	r := e.start(t, true)
	in, _ := largeBundle(2000, 1537)
	req, err := http.NewRequest("POST", "http://"+r.addrs.HTTP+"/v1/fhir/$de-identify?profile=limited_data_set", io.MultiReader(strings.NewReader(in)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
	var got struct {
		Entry []json.RawMessage `json:"entry"`
	}
	require.NoError(t, json.Unmarshal(out, &got), "one whole Bundle")
	assert.Len(t, got.Entry, 1999, "every entry but the bad one")
}
