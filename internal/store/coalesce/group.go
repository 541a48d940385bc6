package coalesce

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/phivault/tokenizer/internal/errs"
)

// group coalesces the calls of one store operation. Q is an item of a call's input,
// R a call's result.
type group[Q, R any] struct {
	op     string
	s      *Store
	window time.Duration
	max    int
	inner  func(ctx context.Context, in []Q) (R, error)
	// split picks a call's own result out of the merged one; in is the merged input,
	// and the call's items are in[c.off : c.off+len(c.in)].
	split func(merged R, c *call[Q, R]) R

	mu   sync.Mutex
	open *batch[Q, R] // the batch taking calls, if any
	busy int          // statements of this operation running now
}

// call is one caller's part of a batch.
type call[Q, R any] struct {
	ctx context.Context
	in  []Q
	off int // where in starts in the merged input
	out R
	err error
	// alone: the merged statement failed for a reason that may be one call's own (not
	// an unreachable database); every call runs again by itself.
	alone bool
}

// batch is the calls that go in one statement.
type batch[Q, R any] struct {
	calls  []*call[Q, R]
	items  int
	timer  *time.Timer
	done   chan struct{} // closed when every call has its result
	sealed bool          // no more calls join; the statement is running
	ctx    context.Context
	cancel context.CancelFunc
	left   int // calls still waiting for the sealed batch
	// panicked is what the statement panicked with, if it did: each waiting caller
	// panics with it in its own goroutine, where the server's recovery step is.
	panicked any
}

// do runs in through the group: at once when nothing of the operation is running, else
// in the next merged statement, which goes when the running ones finish, when the
// window has passed or when it is full, whichever comes first. A caller whose ctx ends
// while it waits returns ctx's error.
func (g *group[Q, R]) do(ctx context.Context, in []Q) (R, error) {
	if g.window <= 0 {
		return g.inner(ctx, in)
	}
	if len(in) >= g.max {
		g.s.observe(g.op, 1, len(in))
		return g.inner(ctx, in)
	}
	c := &call[Q, R]{ctx: ctx, in: in}
	b := g.join(c)
	if b == nil {
		defer g.finished()
		g.s.observe(g.op, 1, len(in))
		return g.inner(ctx, in)
	}
	var zero R
	select {
	case <-b.done:
	case <-ctx.Done():
		g.leave(b, c)
		return zero, ctx.Err()
	}
	switch {
	case b.panicked != nil:
		panic(b.panicked)
	case c.alone:
		return g.inner(ctx, in)
	case c.err != nil && ctx.Err() != nil:
		return zero, ctx.Err()
	case c.err != nil:
		return zero, c.err
	}
	return c.out, nil
}

// queued is how many calls wait in the open batch.
func (g *group[Q, R]) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open == nil {
		return 0
	}
	return len(g.open.calls)
}

// join adds c to the open batch (opening one if needed) and returns it, or returns nil
// when nothing of the operation is running: the caller then runs alone, now.
func (g *group[Q, R]) join(c *call[Q, R]) *batch[Q, R] {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy == 0 && g.open == nil {
		g.busy++
		return nil
	}
	b := g.open
	if b != nil && b.items+len(c.in) > g.max {
		g.seal(b)
		b = nil
	}
	if b == nil {
		b = &batch[Q, R]{done: make(chan struct{})}
		g.open = b
		b.timer = time.AfterFunc(g.window, func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.open == b {
				g.seal(b)
			}
		})
	}
	b.calls = append(b.calls, c)
	b.items += len(c.in)
	if b.items >= g.max {
		g.seal(b)
	}
	return b
}

// leave takes c out of b after c's caller gave up waiting: out of the statement if it
// has not gone yet. When no caller is left, a running statement is cancelled.
func (g *group[Q, R]) leave(b *batch[Q, R], c *call[Q, R]) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b.sealed {
		if b.left--; b.left == 0 {
			b.cancel()
		}
		return
	}
	for i, x := range b.calls {
		if x == c {
			b.calls = append(b.calls[:i], b.calls[i+1:]...)
			b.items -= len(c.in)
			break
		}
	}
	if len(b.calls) == 0 {
		b.timer.Stop()
		g.open = nil
	}
}

// seal closes b to new calls and starts its statement. g.mu is held.
func (g *group[Q, R]) seal(b *batch[Q, R]) {
	if g.open == b {
		g.open = nil
	}
	b.timer.Stop()
	b.sealed = true
	b.left = len(b.calls)
	// No caller's cancellation or deadline ends the statement, which others still wait
	// for; it is cancelled when every caller has left (leave), so that it never fails
	// for a deadline before the callers themselves see theirs, and it is bounded like
	// every statement by PostgreSQL's statement_timeout.
	b.ctx, b.cancel = context.WithCancel(context.Background())
	g.busy++
	go g.run(b)
}

// finished counts a statement done and, when none is left running, sends the open
// batch at once rather than at the end of its window.
func (g *group[Q, R]) finished() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy--
	if g.busy == 0 && g.open != nil {
		g.seal(g.open)
	}
}

// run executes b's merged statement and gives each call its part.
func (g *group[Q, R]) run(b *batch[Q, R]) {
	defer g.finished()
	defer close(b.done)
	defer b.cancel()
	defer func() {
		if r := recover(); r != nil {
			b.panicked = r
		}
	}()
	var in []Q
	for _, c := range b.calls {
		c.off = len(in)
		in = append(in, c.in...)
	}
	merged, err := g.inner(b.ctx, in)
	g.s.observe(g.op, len(b.calls), len(in))
	switch {
	case err == nil:
		for _, c := range b.calls {
			c.out = g.split(merged, c)
		}
	case len(b.calls) == 1 || errors.Is(err, errs.ErrUnavailable) || errors.Is(err, context.Canceled):
		// The database is out of reach (or every caller left): running the calls again
		// one by one would only multiply the load. Each gets the same error, which names
		// the operation and SQLSTATE, never an item.
		for _, c := range b.calls {
			c.err = err
		}
	default:
		// Anything else (a conflict that outlived the store's retries, a foreign key
		// to a subject erased meanwhile) may belong to one call's items: each call runs
		// again by itself, so that no call fails for another's items.
		for _, c := range b.calls {
			c.alone = true
		}
		g.s.retried.Add(1)
	}
}
