package gateway

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// ReadIdle cuts off a request whose body stops arriving: before each read of the body
// the connection's read deadline is set d ahead, so a client that sends a few bytes
// and then nothing (slow loris) holds its connection and handler for at most d at a
// time, not forever.
//
// Once the body is read to its end the deadline is lifted, so that neither the
// server's watch for a closed connection nor the next request on a kept-alive
// connection inherits it. When the handler returns with the body not read to its end
// (an answer given without reading it), the deadline is set d ahead once more and left:
// the server reads the rest of the body before it reuses the connection (and before it
// answers, for some answers), and a client that stops sending then is cut off too;
// after a read failed, the deadline that failed it stays. Reads after the
// handler returned (a streaming route's decoder goroutine) touch no deadline: the
// connection's stream may be gone.
func ReadIdle(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || d <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		b := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: d}
		defer b.finish()
		// A shallow copy carries the wrapped body: the server keeps its own request,
		// whose body it inspects when the answer starts before the body is read.
		r = r.WithContext(r.Context())
		r.Body = b
		next.ServeHTTP(w, r)
	})
}

type idleBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration

	mu     sync.Mutex
	eof    bool // read to its end: the deadline is lifted
	failed bool // a read failed (timed out): the deadline stays as it is
	done   bool // the handler returned: deadlines are no longer ours to set
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if !b.done {
		// Not every connection supports deadlines (ErrNotSupported): then it reads as
		// before.
		_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	}
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.mu.Lock()
		switch {
		case b.done || b.eof || b.failed:
		case err == io.EOF:
			b.eof = true
			_ = b.rc.SetReadDeadline(time.Time{})
		default:
			b.failed = true
		}
		b.mu.Unlock()
	}
	return n, err
}

// finish runs as the handler returns.
func (b *idleBody) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = true
	switch {
	case b.failed:
	case b.eof:
		_ = b.rc.SetReadDeadline(time.Time{})
	default:
		_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	}
}
