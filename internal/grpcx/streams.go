package grpcx

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Counts counts what each key holds open (a caller's streams).
type Counts struct {
	mu   sync.Mutex
	open map[string]int
}

// Acquire takes a slot for id, or reports false when id holds max already.
func (c *Counts) Acquire(id string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil {
		c.open = map[string]int{}
	}
	if c.open[id] >= max {
		return false
	}
	c.open[id]++
	return true
}

// Release gives back a slot of id.
func (c *Counts) Release(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[id]--; c.open[id] <= 0 {
		delete(c.open, id)
	}
}

// RecvIdle receives the next message of a stream, or fails with DEADLINE_EXCEEDED when
// none arrives within the idle timeout. The receiving goroutine ends with the stream.
func RecvIdle[Req any](ctx context.Context, recv func() (*Req, error), idle time.Duration) (*Req, error) {
	type got struct {
		req *Req
		err error
	}
	ch := make(chan got, 1)
	go func() {
		r, err := recv()
		ch <- got{r, err}
	}()
	t := time.NewTimer(idle)
	defer t.Stop()
	select {
	case g := <-ch:
		return g.req, g.err
	case <-t.C:
		return nil, fmt.Errorf("stream idle for %s: %w", idle, context.DeadlineExceeded)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
