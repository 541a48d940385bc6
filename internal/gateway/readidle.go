package gateway

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// ReadIdle cuts off a request whose body stops arriving: before each read of the body
// the connection's read deadline is set idle ahead, so a client that sends a few bytes
// and then nothing (slow loris) holds its connection and handler for at most idle at a
// time, not forever. A body other than a stream's must also be complete within total
// of the handler's start: a client that trickles a byte just often enough is cut off
// then. A stream (REST :stream, FHIR NDJSON, a Bundle sent in parts) is a sequence of
// requests; its handler lifts the total bound (streaming), and only idle applies.
//
// Between reads (the handler's own work) the idle deadline is lifted too. Once the body
// is read to its end the deadline is lifted, so that neither the
// server's watch for a closed connection nor the next request on a kept-alive
// connection inherits it. When the handler returns with the body not read to its end
// (an answer given without reading it), the deadline is set idle ahead once more and
// left: the server reads the rest of the body before it reuses the connection (and
// before it answers, for some answers), and a client that stops sending then is cut
// off too; after a read failed, the deadline that failed it stays. Reads after the
// handler returned (a streaming route's decoder goroutine) touch no deadline: the
// connection's stream may be gone.
func ReadIdle(idle, total time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || idle <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		b := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: idle}
		if total > 0 {
			b.end = time.Now().Add(total)
		}
		defer b.finish()
		// A shallow copy carries the wrapped body: the server keeps its own request,
		// whose body it inspects when the answer starts before the body is read.
		r = r.WithContext(context.WithValue(r.Context(), idleKey{}, b))
		r.Body = b
		next.ServeHTTP(w, r)
	})
}

type idleKey struct{}

// streaming lifts the total bound of r's body: it is a stream's.
func streaming(r *http.Request) {
	if b, ok := r.Context().Value(idleKey{}).(*idleBody); ok {
		b.mu.Lock()
		b.end = time.Time{}
		b.mu.Unlock()
	}
}

type idleBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration

	mu      sync.Mutex
	end     time.Time // the body must be complete by then (zero: no bound)
	byTotal bool      // the deadline set last is end
	eof     bool      // read to its end: the deadline is lifted
	failed  bool      // a read failed (timed out): the deadline stays as it is
	done    bool      // the handler returned: deadlines are no longer ours to set
}

// errBodyTooSlow is the read error of a body not complete by its end: a timeout, so
// callers that classify timeouts see one, with its own message.
type errBodyTooSlow struct{}

func (errBodyTooSlow) Error() string {
	return "request body: not complete within limits.read_body_timeout; the request is cut off"
}
func (errBodyTooSlow) Timeout() bool   { return true }
func (errBodyTooSlow) Temporary() bool { return false }

func (b *idleBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if !b.done {
		dl := time.Now().Add(b.d)
		b.byTotal = !b.end.IsZero() && b.end.Before(dl)
		if b.byTotal {
			dl = b.end
		}
		// Not every connection supports deadlines (ErrNotSupported): then it reads as
		// before.
		_ = b.rc.SetReadDeadline(dl)
	}
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.done || b.eof || b.failed:
	case err == nil:
		// The wait for the client is over: the handler's work until its next read does
		// not count as idle. (Over HTTP/2 a stream's deadline fires whether or not a
		// read waits, and the next read would fail.) The total bound stays.
		_ = b.rc.SetReadDeadline(b.end)
	case err == io.EOF:
		b.eof = true
		_ = b.rc.SetReadDeadline(time.Time{})
	default:
		b.failed = true
		if b.byTotal && isTimeout(err) {
			err = errBodyTooSlow{}
		}
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
