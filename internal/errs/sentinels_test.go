package errs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
)

func TestErrors(t *testing.T) {
	t.Parallel()
	cause := errors.New("dial tcp 127.0.0.1:5432: connection refused")
	tests := []struct {
		name      string
		err       error
		wantKind  errs.Kind
		wantText  string
		wantCause error // nil: Unwrap gives nil
		isUnavail bool
		isConfl   bool
	}{
		{name: "New formats the message", err: errs.New(errs.InvalidArgument, "items[%d].class: %s", 3, "unknown"),
			wantKind: errs.InvalidArgument, wantText: "items[3].class: unknown"},
		{name: "New without arguments", err: errs.New(errs.NotFound, "token not found"),
			wantKind: errs.NotFound, wantText: "token not found"},
		{name: "Wrap keeps the cause", err: errs.Wrap(errs.Internal, cause, "store failed"),
			wantKind: errs.Internal, wantText: "store failed: " + cause.Error(), wantCause: cause},
		{name: "Wrap of nil", err: errs.Wrap(errs.Aborted, nil, "retry"), wantKind: errs.Aborted, wantText: "retry"},
		{name: "Wrap unavailable", err: errs.Wrap(errs.Unavailable, fmt.Errorf("ping: %w", errs.ErrUnavailable), "database unavailable"),
			wantKind: errs.Unavailable, wantText: "database unavailable: ping: unavailable", isUnavail: true},
		{name: "Wrap conflict", err: errs.Wrap(errs.Aborted, fmt.Errorf("commit: %w", errs.ErrConflict), "try again"),
			wantKind: errs.Aborted, wantText: "try again: commit: conflict", isConfl: true},
		{name: "Error wrapped with %w keeps its kind", err: fmt.Errorf("engine: %w", errs.New(errs.PermissionDenied, "no")),
			wantKind: errs.PermissionDenied, wantText: "engine: no"},
		{name: "deeply wrapped sentinel", err: fmt.Errorf("a: %w", fmt.Errorf("b: %w", errs.Wrap(errs.Unavailable, fmt.Errorf("c: %w", errs.ErrUnavailable), "keys"))),
			wantKind: errs.Unavailable, wantText: "a: b: keys: c: unavailable", isUnavail: true},
		{name: "joined sentinels", err: errors.Join(errs.ErrConflict, errs.New(errs.ResourceExhausted, "slow down")),
			wantKind: errs.ResourceExhausted, wantText: "conflict\nslow down", isConfl: true},
		{name: "plain error is internal", err: errors.New("boom"), wantKind: errs.Internal, wantText: "boom"},
		{name: "bare sentinel is internal", err: errs.ErrUnavailable, wantKind: errs.Internal, wantText: "unavailable", isUnavail: true},
		{name: "%v does not wrap", err: fmt.Errorf("x: %v", errs.ErrConflict), wantKind: errs.Internal, wantText: "x: conflict"},
		{name: "context error", err: context.DeadlineExceeded, wantKind: errs.Internal, wantText: "context deadline exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.wantKind, errs.KindOf(tc.err))
			assert.Equal(t, tc.wantText, tc.err.Error())
			assert.Equal(t, tc.isUnavail, errors.Is(tc.err, errs.ErrUnavailable))
			assert.Equal(t, tc.isConfl, errors.Is(tc.err, errs.ErrConflict))
			if e, ok := tc.err.(*errs.Error); ok {
				if tc.wantCause == nil {
					if !tc.isUnavail && !tc.isConfl {
						assert.NoError(t, e.Unwrap())
					}
				} else {
					assert.Same(t, tc.wantCause, e.Unwrap())
				}
			}
		})
	}
}

func TestKindOfNil(t *testing.T) {
	t.Parallel()
	assert.Equal(t, errs.Internal, errs.KindOf(nil))
}

func TestKindOfOuterErrorWins(t *testing.T) {
	t.Parallel()
	inner := errs.New(errs.NotFound, "inner")
	outer := errs.Wrap(errs.Unavailable, inner, "outer")
	assert.Equal(t, errs.Unavailable, errs.KindOf(outer))
	var e *errs.Error
	require.ErrorAs(t, outer, &e)
	assert.Equal(t, "outer", e.Msg)
	assert.ErrorIs(t, outer, inner)
}

func TestRetryAfterSurvivesWrapping(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("limit: %w", &errs.Error{Kind: errs.ResourceExhausted, Msg: "rate limit", RetryAfter: 1500 * time.Millisecond})
	var e *errs.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 1500*time.Millisecond, e.RetryAfter)
	assert.Equal(t, errs.ResourceExhausted, errs.KindOf(err))
}

func TestSentinelsAreDistinct(t *testing.T) {
	t.Parallel()
	assert.NotErrorIs(t, errs.ErrUnavailable, errs.ErrConflict)
	assert.NotErrorIs(t, errs.ErrConflict, errs.ErrUnavailable)
}
