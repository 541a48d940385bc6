package gateway

import (
	"io"
	"net/http"
	"time"
)

// ReadIdle cuts off a request whose body stops arriving: before each read of the body
// the connection's read deadline is set d ahead, so a client that sends a few bytes
// and then nothing (slow loris) holds its connection and handler for at most d at a
// time, not forever. Once the body is read to its end, and when the handler returns,
// the deadline is lifted, so that neither the server's watch for a closed connection
// nor the next request on a kept-alive connection inherits it. After a read failed it
// stays, so that the server's attempt to read the rest of the body (to reuse the
// connection) ends by it too, and the connection is closed.
func ReadIdle(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || d <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		b := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: d}
		defer func() {
			if !b.failed {
				_ = b.rc.SetReadDeadline(time.Time{})
			}
		}()
		// A shallow copy carries the wrapped body: the server keeps its own request,
		// whose body it inspects when the answer starts before the body is read.
		r = r.WithContext(r.Context())
		r.Body = b
		next.ServeHTTP(w, r)
	})
}

type idleBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	d      time.Duration
	failed bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	// Not every connection supports deadlines (ErrNotSupported): then it reads as before.
	_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil:
		b.failed = true
	}
	return n, err
}
