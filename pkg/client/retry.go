package client

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RetryPolicy says how often and how patiently a failed call is repeated. Only
// UNAVAILABLE, RESOURCE_EXHAUSTED and ABORTED are retried; every other code (a bad
// argument, a denial, a missing credential) fails at once, since repeating the same
// request cannot change the answer.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt; 1 disables retries.
	MaxAttempts int
	// InitialBackoff is the pause before the first retry; it doubles on each retry up
	// to MaxBackoff, and each pause is drawn at random between half of it and all of
	// it (jitter), so that many clients do not retry in step.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// OnRetry, when set, is called before each pause with the attempt that failed
	// (1-based), its status code and the pause chosen (for logs and metrics).
	OnRetry func(attempt int, code codes.Code, delay time.Duration)
}

// DefaultRetryPolicy is used unless WithRetry is given.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}

// Retryable reports whether a call that failed with code may succeed if repeated.
func Retryable(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// backoff is the pause before retry number n (0-based) of an error: the server's
// RetryInfo delay when it sent one (RESOURCE_EXHAUSTED from a rate limit), else
// exponential backoff with jitter.
func (p RetryPolicy) backoff(n int, err error) time.Duration {
	if d, ok := retryInfo(err); ok {
		// Never earlier than the server asked; a little later, at random, so that the
		// clients it refused do not all come back in the same instant.
		return d + rand.N(d/10+time.Millisecond)
	}
	d := p.InitialBackoff
	for range n {
		d *= 2
		if d >= p.MaxBackoff {
			d = p.MaxBackoff
			break
		}
	}
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// retryInfo returns the delay of a google.rpc.RetryInfo detail in err's status.
func retryInfo(err error) (time.Duration, bool) {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// call runs one unary call with the per-attempt deadline, retrying as the policy says.
// The context bounds the whole: when it ends during a pause, the last error is returned.
func (c *Client) call(ctx context.Context, attempt func(ctx context.Context) error) error {
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, c.timeout)
		err := attempt(actx)
		cancel()
		if err == nil {
			return nil
		}
		code := status.Code(err)
		if !Retryable(code) || n >= c.retry.MaxAttempts || ctx.Err() != nil {
			return err
		}
		delay := c.retry.backoff(n-1, err)
		if c.retry.OnRetry != nil {
			c.retry.OnRetry(n, code, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
