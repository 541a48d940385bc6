package server_test

import (
	"bufio"
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

// A REST client that starts a body and then sends nothing is cut off after
// limits.read_idle_timeout, while one that sends slowly but steadily (for longer than
// the timeout in all) is served, and a kept-alive connection serves its next request.
func TestRESTBodyThatStopsIsCutOff(t *testing.T) {
	t.Parallel()
	const idle = 400 * time.Millisecond
	_, r := idleServer(t, idle, 0)
	body := `{"items":[{"class":"ssn","value":"123-45-6789","reference":"r1"}]}`
	head := fmt.Sprintf("POST /v1/tokenize HTTP/1.1\r\nHost: tokenizer\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))

	// Stalls after a third of the body.
	conn := dialRaw(t, r)
	start := time.Now()
	_, err := io.WriteString(conn, head+body[:len(body)/3])
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	rest, _ := io.ReadAll(conn) // the server answers (or not) and closes
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, idle, "not before the timeout")
	assert.Less(t, took, 10*time.Second, "cut off, not held")
	assert.Contains(t, string(rest), "408 Request Timeout")
	assert.Contains(t, string(rest), "read_idle_timeout", "the answer names the setting")
	assert.NotContains(t, string(rest), "123-45-6789", "nothing of the body comes back")

	// Trickles: a few bytes every idle/3, about 2.5 timeouts in all.
	conn2, err := net.Dial("tcp", r.addrs.HTTP)
	require.NoError(t, err)
	defer conn2.Close()
	_, err = io.WriteString(conn2, head)
	require.NoError(t, err)
	chunks := 8
	step := (len(body) + chunks - 1) / chunks
	for i := 0; i < len(body); i += step {
		time.Sleep(idle / 3)
		_, err := io.WriteString(conn2, body[i:min(i+step, len(body))])
		require.NoError(t, err)
	}
	br := bufio.NewReader(conn2)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
	assert.Contains(t, string(out), `"token"`)

	// The same connection serves the next request after a pause longer than the last
	// read's deadline would have allowed, had it stayed set.
	time.Sleep(idle / 2)
	_, err = io.WriteString(conn2, head+body)
	require.NoError(t, err)
	time.Sleep(idle) // the handler's reads are over; a stale deadline would cut this
	resp, err = http.ReadResponse(br, nil)
	require.NoError(t, err)
	out, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
	assert.True(t, strings.Contains(string(out), `"token"`))

	// Idle after that: the kept-alive connection is closed.
	require.NoError(t, conn2.SetReadDeadline(time.Now().Add(20*time.Second)))
	start = time.Now()
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "closed by the server")
	assert.Less(t, time.Since(start), 10*time.Second)
}

// A request answered without its body being read (here 415, a wrong Content-Type) whose
// client then stops sending is not held either: the server's reading of the rest of the
// body, which comes before it reuses the connection, is bounded by the same timeout.
func TestRESTUnreadBodyThatStopsIsCutOff(t *testing.T) {
	t.Parallel()
	const idle = 400 * time.Millisecond
	_, r := idleServer(t, idle, 0)
	conn := dialRaw(t, r)
	start := time.Now()
	_, err := io.WriteString(conn, "POST /v1/fhir/$de-identify HTTP/1.1\r\nHost: tokenizer\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\nonly a little")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	rest, _ := io.ReadAll(conn)
	assert.Less(t, time.Since(start), 10*time.Second, "answered or closed, not held")
	assert.NotContains(t, string(rest), "200 OK")
}

// A REST stream whose body stops arriving ends, after the lines answered, with exactly
// one error line: the stall (DEADLINE_EXCEEDED, naming the setting), not a cancellation
// of the stream first. The plain 408 answer carries the same code.
func TestRESTStreamThatStopsEndsWithOneError(t *testing.T) {
	t.Parallel()
	const idle = 400 * time.Millisecond
	_, r := idleServer(t, idle, 0)
	conn := dialRaw(t, r)
	line := `{"items":[{"class":"ssn","value":"123-45-6789","reference":"first"}]}` + "\n"
	_, err := io.WriteString(conn, "POST /v1/tokenize:stream HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk(line)+chunk(`{"items":[{"cla`))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 2, "one answer, then one error line: %s", out)
	assert.Contains(t, lines[0], `"first"`)
	assert.Contains(t, lines[1], `"code":4`)
	assert.Contains(t, lines[1], "read_idle_timeout")
	assert.NotContains(t, string(out), "canceled")

	conn2, err := net.Dial("tcp", r.addrs.HTTP)
	require.NoError(t, err)
	defer conn2.Close()
	_, err = io.WriteString(conn2, "POST /v1/tokenize HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"items\"")
	require.NoError(t, err)
	require.NoError(t, conn2.SetReadDeadline(time.Now().Add(20*time.Second)))
	resp, err = http.ReadResponse(bufio.NewReader(conn2), nil)
	require.NoError(t, err)
	out, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	assert.Contains(t, string(out), `"code":4`, "DEADLINE_EXCEEDED, as documented")
}

// A client that trickles a request body, a byte just often enough to beat
// limits.read_idle_timeout, is cut off once limits.read_body_timeout has passed (408,
// DEADLINE_EXCEEDED, naming the setting, audited), while a stream, a sequence of
// requests, may take longer as long as it keeps sending.
func TestRESTTricklingBodyIsCutOff(t *testing.T) {
	t.Parallel()
	const idle, total = 600 * time.Millisecond, 1500 * time.Millisecond
	e, r := idleServer(t, idle, total)
	body := `{"items":[{"class":"ssn","value":"123-45-6789","reference":"trickled"}]}`
	conn := dialRaw(t, r)
	start := time.Now()
	_, err := fmt.Fprintf(conn, "POST /v1/tokenize HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	require.NoError(t, err)
	answered := make(chan string, 1)
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		out, _ := io.ReadAll(conn)
		answered <- string(out)
	}()
	var out string
trickle:
	for i := 0; i < len(body); i++ {
		select {
		case out = <-answered:
			break trickle
		case <-time.After(idle / 3):
		}
		if _, err := conn.Write([]byte{body[i]}); err != nil {
			out = <-answered
			break
		}
	}
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, total, "not before read_body_timeout")
	assert.Less(t, took, 10*time.Second, "cut off, not held for the whole trickle")
	assert.Contains(t, out, "408 Request Timeout")
	assert.Contains(t, out, "read_body_timeout")
	assert.Contains(t, out, `"code":4`)
	assert.NotContains(t, out, "123-45-6789")
	refused := false
	for _, d := range events(t, e.dbURL) {
		if d.Operation == "tokenize" && strings.Contains(d.Reason, "read_body_timeout") {
			refused = true
		}
	}
	assert.True(t, refused, "the cut-off request is audited")

	// A stream sending a line every idle/2 for longer than read_body_timeout in all.
	conn2, err := net.Dial("tcp", r.addrs.HTTP)
	require.NoError(t, err)
	defer conn2.Close()
	_, err = io.WriteString(conn2, "POST /v1/tokenize:stream HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
	require.NoError(t, err)
	const lines = 6 // 6 × idle/2 = 1.8 s > total
	for i := range lines {
		time.Sleep(idle / 2)
		_, err := io.WriteString(conn2, chunk(fmt.Sprintf(`{"items":[{"class":"ssn","value":"123-45-6789","reference":"l%d"}]}`+"\n", i)))
		require.NoError(t, err)
	}
	_, err = io.WriteString(conn2, "0\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn2.SetReadDeadline(time.Now().Add(20*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn2), nil)
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, lines, strings.Count(string(got), `"token"`), "every line answered: %s", got)
	assert.NotContains(t, string(got), `"error"`)
}

// A unary body whose message is complete but whose body is not (no last chunk, or a
// declared length not reached) fails as the body's failure, 408 naming the setting and
// audited, not as a cancellation that nothing records; a body whose client goes away
// is audited as CANCELLED, not as malformed JSON.
func TestRESTBodyFailingAfterItsMessage(t *testing.T) {
	t.Parallel()
	const idle = 400 * time.Millisecond
	e, r := idleServer(t, idle, 0)
	body := `{"items":[{"class":"ssn","value":"123-45-6789","reference":"r1"}]}`
	exchange := func(raw string, halfClose bool) string {
		conn, err := net.Dial("tcp", r.addrs.HTTP)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, raw)
		require.NoError(t, err)
		if halfClose {
			require.NoError(t, conn.(*net.TCPConn).CloseWrite())
		}
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
		out, _ := io.ReadAll(conn)
		return string(out)
	}
	head := "POST /v1/tokenize HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	for name, raw := range map[string]string{
		"no last chunk":      head + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", len(body), body),
		"length not reached": head + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)+10) + body,
	} {
		out := exchange(raw, false)
		assert.Contains(t, out, "408 Request Timeout", name)
		assert.Contains(t, out, `"code":4`, name)
		assert.Contains(t, out, "read_idle_timeout", name)
	}
	out := exchange(head+"Content-Length: 500\r\n\r\n"+body[:30], true)
	assert.NotContains(t, out, "not valid JSON")
	out = exchange("POST /v1/fhir/$de-identify?profile=safe_harbor HTTP/1.1\r\nHost: t\r\nContent-Type: application/fhir+json\r\nContent-Length: 500\r\n\r\n"+`{"resourceType":"Patient","id":"x"`, true)
	assert.NotContains(t, out, "malformed")
	var stalled, cut int
	for _, d := range events(t, e.dbURL) {
		switch {
		case d.Outcome == "DEADLINE_EXCEEDED" && d.Operation == "tokenize" && strings.Contains(d.Reason, "read_idle_timeout"):
			stalled++
		case d.Outcome == "CANCELLED" && strings.Contains(d.Reason, "connection closed before the end of the body"):
			cut++
		}
	}
	assert.Equal(t, 2, stalled, "each stalled body is audited")
	assert.Equal(t, 2, cut, "a body cut by its client (REST, FHIR) is audited as CANCELLED")
}

// idleServer starts a server whose REST bodies may stop for idle, and, when total is
// not zero, take total in all.
func idleServer(t *testing.T, idle, total time.Duration) (*env, *running) {
	t.Helper()
	e := newEnv(t)
	e.mutate = func(c *config.Config) {
		c.Limits.ReadIdleTimeout = idle
		if total > 0 {
			c.Limits.ReadBodyTimeout = total
		}
	}
	return e, e.start(t, true)
}

// dialRaw opens a TCP connection to the REST port, closed when the test ends.
func dialRaw(t *testing.T, r *running) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", r.addrs.HTTP)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// chunk frames s as one chunk of an HTTP/1.1 chunked body.
func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }
