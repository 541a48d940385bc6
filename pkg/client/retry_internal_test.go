package client

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestRetryable(t *testing.T) {
	for code, want := range map[codes.Code]bool{
		codes.Unavailable: true, codes.ResourceExhausted: true, codes.Aborted: true,
		codes.InvalidArgument: false, codes.PermissionDenied: false, codes.Unauthenticated: false,
		codes.NotFound: false, codes.Internal: false, codes.DeadlineExceeded: false, codes.Canceled: false,
		codes.FailedPrecondition: false, codes.OK: false,
	} {
		assert.Equal(t, want, Retryable(code), "%s", code)
	}
}

// TestBackoff checks the pauses: exponential growth capped at MaxBackoff, each drawn
// between half and all of its step; a RetryInfo delay is never shortened.
func TestBackoff(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	plain := status.Error(codes.Unavailable, "down")
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for n, step := range steps {
		step *= time.Millisecond
		for range 200 {
			d := p.backoff(n, plain)
			require.GreaterOrEqual(t, d, step/2, "retry %d", n)
			require.LessOrEqual(t, d, step, "retry %d", n)
		}
	}
	st, err := status.New(codes.ResourceExhausted, "rate limit").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
	require.NoError(t, err)
	for range 200 {
		d := p.backoff(0, st.Err())
		require.GreaterOrEqual(t, d, 3*time.Second, "RetryInfo is a minimum, above MaxBackoff too")
		require.LessOrEqual(t, d, 3*time.Second+301*time.Millisecond)
	}
	_, ok := retryInfo(errors.New("not a status"))
	assert.False(t, ok)
}
