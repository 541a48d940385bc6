package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
	postBothWays(t, r, "/v1/fhir/$de-identify?profile=safe_harbor", "application/fhir+ndjson", body, func(name string, resp *http.Response, out string) {
		assert.Equal(t, n, strings.Count(out, "\n"), "%s: one answer per line", name)
		assert.Empty(t, resp.Trailer.Get("X-Tokenizer-Errors"), name)
		assert.NotContains(t, out, "Bigfamily", name)
	})
}

// postBothWays posts body to path twice, with its length declared and chunked, and
// hands check each 200 answer.
func postBothWays(t *testing.T, r *running, path, contentType, body string, check func(name string, resp *http.Response, out string)) {
	t.Helper()
	for name, rd := range map[string]func() io.Reader{
		"length":  func() io.Reader { return strings.NewReader(body) },
		"chunked": func() io.Reader { return io.MultiReader(strings.NewReader(body)) },
	} {
		resp, err := http.Post("http://"+r.addrs.HTTP+path, contentType, rd())
		require.NoError(t, err, name)
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err, name)
		require.Equal(t, http.StatusOK, resp.StatusCode, name)
		check(name, resp, string(out))
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

// NDJSON whose lines are long for the message limit goes in messages by bytes as well as
// by lines; a line that cannot fit a message is refused as too large (413, audited),
// never as the gRPC client's own refusal; a body that stops arriving is 408, audited,
// and the answer names no socket or address.
func TestFHIRNDJSONAtTheMessageLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const idle = 400 * time.Millisecond
	e.mutate = func(c *config.Config) {
		c.Limits.MaxMessageBytes = 64 << 10
		c.Limits.ReadIdleTimeout = idle
	}
	r := e.start(t, true)
	line := func(i, pad int) string {
		return fmt.Sprintf(`{"resourceType":"Patient","id":"w-%04d","gender":"other","name":[{"family":"Widefamily","given":["%s"]}]}`, i, strings.Repeat("g", pad))
	}
	var lines []string
	for i := range 300 {
		lines = append(lines, line(i, 900+i*100)) // up to about 31 KB, 4.6 MB in all
	}
	code, out, hdr := fhirPost(t, r, "/v1/fhir/$de-identify?profile=safe_harbor", "application/fhir+ndjson", strings.Join(lines, "\n"))
	require.Equal(t, http.StatusOK, code, out)
	assert.Equal(t, 300, strings.Count(out, "\n"), "every line answered")
	assert.Empty(t, hdr.Get("X-Tokenizer-Errors"))
	assert.NotContains(t, out, "Widefamily")

	before := len(events(t, e.dbURL))
	giant := line(0, 70<<10)
	code, out, _ = fhirPost(t, r, "/v1/fhir/$de-identify?profile=safe_harbor", "application/fhir+ndjson", giant+"\n"+line(1, 10))
	assert.Equal(t, http.StatusRequestEntityTooLarge, code, out)
	assert.Contains(t, out, "limits.max_message_bytes")
	assert.NotContains(t, out, "Widefamily")
	evs := events(t, e.dbURL)
	require.Len(t, evs, before+1, "the refusal is audited")
	assert.Contains(t, evs[len(evs)-1].Reason, "larger than limits.max_message_bytes")

	// Stalls before its first message.
	conn, err := net.Dial("tcp", r.addrs.HTTP)
	require.NoError(t, err)
	defer conn.Close()
	first := line(2, 10) + "\n"
	_, err = io.WriteString(conn, fmt.Sprintf("POST /v1/fhir/$de-identify?profile=safe_harbor HTTP/1.1\r\nHost: t\r\nContent-Type: application/fhir+ndjson\r\nContent-Length: %d\r\n\r\n%s", len(first)+500, first))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	rest, _ := io.ReadAll(conn)
	assert.Contains(t, string(rest), "408 Request Timeout")
	assert.Contains(t, string(rest), "read_idle_timeout")
	assert.NotContains(t, string(rest), "127.0.0.1")
	assert.NotContains(t, string(rest), "tcp")
	evs = events(t, e.dbURL)
	assert.Contains(t, evs[len(evs)-1].Reason, "read_idle_timeout", "audited")
}

// The REST streams (:stream) answer every request line of a long body, declared or
// chunked: none is lost to net/http reading ahead once answers start.
func TestRESTStreamLongBodyLosesNoRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	const n = 6000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"items":[{"class":"ssn","value":"%03d-%02d-%04d","reference":"line-%05d"}]}`+"\n", 100+i%500, 10+i%89, 1000+i, i)
	}
	body := b.String()
	require.Greater(t, len(body), 300<<10)
	postBothWays(t, r, "/v1/tokenize:stream", "application/json", body, func(name string, _ *http.Response, out string) {
		assert.Equal(t, n, strings.Count(out, `"token"`), "%s: one answer per request line", name)
		assert.NotContains(t, out, `"error"`, name)
	})
}

// A REST stream answers each request line while the client is still sending.
func TestRESTStreamAnswersWhileTheClientSends(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	conn, err := net.Dial("tcp", r.addrs.HTTP)
	require.NoError(t, err)
	defer conn.Close()
	line := `{"items":[{"class":"ssn","value":"123-45-6789","reference":"first"}]}` + "\n"
	_, err = io.WriteString(conn, "POST /v1/tokenize:stream HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk(line))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 0, 4096)
	for !strings.Contains(string(buf), `"first"`) {
		tmp := make([]byte, 1024)
		n, err := conn.Read(tmp)
		require.NoError(t, err, "the first answer comes before the body ends")
		buf = append(buf, tmp[:n]...)
	}
	assert.Contains(t, string(buf), "200 OK")
	_, err = io.WriteString(conn, chunk(strings.Replace(line, "first", "second", 1))+"0\r\n\r\n")
	require.NoError(t, err)
	rest, _ := io.ReadAll(conn)
	assert.Contains(t, string(rest), `"second"`)
}

// NDJSON errors name the failing line's place in the body, blank lines counted, so a
// client can find it.
func TestFHIRNDJSONErrorsNameTheInputLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(t, true)
	ok := `{"resourceType":"Patient","id":"n1","gender":"other"}`
	body := strings.Join([]string{ok, "", "   ", `{"resourceType":"Patient", not json`, ok, "", "\xff\xfe", ok}, "\n")
	code, out, hdr := fhirPost(t, r, "/v1/fhir/$de-identify?profile=safe_harbor", "application/fhir+ndjson", body)
	require.Equal(t, http.StatusOK, code, out)
	assert.Equal(t, 3, strings.Count(out, "\n"))
	errs := hdr.Get("X-Tokenizer-Errors")
	assert.Contains(t, errs, `"index":3`, "the malformed line is line 3 (0-based) of the body")
	assert.Contains(t, errs, `"index":6`)
	assert.Contains(t, errs, "not valid UTF-8")
	assert.NotContains(t, errs, `"index":1,`)
}

// A REST stream is any number of request messages, each bounded by
// limits.max_message_bytes, not the body: a body many times the limit is answered line
// by line (declared length or chunked), while one line over the limit, or one value
// spread over many lines past it, ends the stream with one error line naming the limit,
// after the lines before it were answered, and is audited.
func TestRESTStreamIsBoundedPerMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const limit = 4096
	e.mutate = func(c *config.Config) { c.Limits.MaxMessageBytes = limit }
	r := e.start(t, true)
	line := func(i int) string {
		return fmt.Sprintf(`{"items":[{"class":"ssn","value":"123-45-6789","reference":"l%d"}]}`, i) + "\n"
	}
	var sb strings.Builder
	const lines = 300 // about 20 KB: five times the limit
	for i := range lines {
		sb.WriteString(line(i))
	}
	post := func(body string, chunked bool) string {
		var rd io.Reader = strings.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd) // no length: sent chunked
		}
		req, err := http.NewRequest(http.MethodPost, "http://"+r.addrs.HTTP+"/v1/tokenize:stream", rd)
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
		return string(out)
	}
	for _, chunked := range []bool{false, true} {
		out := post(sb.String(), chunked)
		assert.Equal(t, lines, strings.Count(out, `"token"`), "chunked %v", chunked)
		assert.NotContains(t, out, `"error"`, "chunked %v", chunked)
	}

	// One line over the limit after two good ones.
	long := `{"items":[{"class":"ssn","value":"123-45-6789","reference":"` + strings.Repeat("x", limit) + `"}]}` + "\n"
	out := post(line(0)+line(1)+long+line(2), false)
	got := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, got, 3, out)
	assert.Contains(t, got[2], "limits.max_message_bytes")
	assert.Contains(t, got[2], `"code":3`)
	assert.NotContains(t, out, "xxxx", "the line is not echoed")

	// A value spread over many short lines, past twice the limit.
	spread := `{"items":[` + strings.Repeat("\n", 3*limit) + `]}` + "\n"
	out = post(line(0)+spread, true)
	got = strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, got, 2, out)
	assert.Contains(t, got[1], "limits.max_message_bytes")

	refused := 0
	for _, d := range events(t, e.dbURL) {
		if d.Operation == "tokenize_stream" && strings.Contains(d.Reason, "limits.max_message_bytes") {
			refused++
		}
	}
	assert.Equal(t, 2, refused, "each stream ended by an oversized message is audited once")
}
