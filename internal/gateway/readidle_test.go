package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A handler that works longer than the idle timeout between two reads of a body that
// keeps arriving is not cut off, over HTTP/2 (where a stream's read deadline fires
// whether or not a read is waiting) as over HTTP/1.1: the idle time is the client's
// silence while the handler waits for it, not the handler's own work. A body that does
// stop is still cut off.
func TestReadIdleCountsOnlyTheWaitForTheClient(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	h := ReadIdle(idle, 0, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		br := bufio.NewReader(r.Body)
		n := 0
		for {
			if _, err := br.ReadString('\n'); err != nil {
				if err == io.EOF {
					fmt.Fprintf(w, "lines %d", n)
				} else {
					w.WriteHeader(http.StatusRequestTimeout)
					fmt.Fprintf(w, "cut after %d lines", n)
				}
				return
			}
			n++
			time.Sleep(2 * idle) // the handler's work on the line
		}
	}))
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewUnstartedServer(h)
			srv.EnableHTTP2 = proto == "HTTP/2.0"
			srv.StartTLS()
			defer srv.Close()
			post := func(send func(w *io.PipeWriter)) (string, int) {
				pr, pw := io.Pipe()
				go send(pw)
				req, err := http.NewRequest(http.MethodPost, srv.URL, pr)
				require.NoError(t, err)
				resp, err := srv.Client().Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				require.Equal(t, proto, resp.Proto)
				out, _ := io.ReadAll(resp.Body)
				return string(out), resp.StatusCode
			}
			// Three lines, each sent at once: the handler's 2×idle of work after each
			// must not count.
			out, code := post(func(w *io.PipeWriter) {
				for range 3 {
					_, _ = io.WriteString(w, "line\n")
					time.Sleep(idle / 3)
				}
				_ = w.Close()
			})
			assert.Equal(t, http.StatusOK, code, out)
			assert.Equal(t, "lines 3", out)
			// One line, then silence while the handler waits: cut off.
			out, code = post(func(w *io.PipeWriter) {
				_, _ = io.WriteString(w, "line\n")
				time.Sleep(10 * idle)
				_ = w.Close()
			})
			assert.Equal(t, http.StatusRequestTimeout, code, out)
		})
	}
}
