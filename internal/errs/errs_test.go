package errs_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/phivault/tokenizer/internal/errs"
)

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	cause := errors.New("pgx: connection reset")
	tests := []struct {
		name string
		err  *errs.Error
		msg  string
	}{
		{"new, formatted", errs.New(errs.InvalidArgument, "item %d: class %q unknown", 3, "mrn"), `item 3: class "mrn" unknown`},
		{"new without arguments", errs.New(errs.NotFound, "token not found"), "token not found"},
		{"wrapped: message then cause", errs.Wrap(errs.Unavailable, cause, "token store unavailable"), "token store unavailable: pgx: connection reset"},
		{"wrapped nil cause", errs.Wrap(errs.Internal, nil, "internal error"), "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.msg, tt.err.Error())
		})
	}
}

func TestWrapKeepsTheCauseApart(t *testing.T) {
	t.Parallel()
	cause := errors.New("serialization failure")
	e := errs.Wrap(errs.Aborted, cause, "conflict, retry")
	assert.Equal(t, "conflict, retry", e.Msg, "the caller sees only Msg")
	assert.ErrorIs(t, e, cause, "the cause stays reachable for the logs")
	assert.Same(t, cause, errors.Unwrap(e))
	assert.Nil(t, errors.Unwrap(errs.New(errs.Internal, "x")))
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want errs.Kind
	}{
		{"nil", nil, errs.Internal},
		{"plain error", errors.New("boom"), errs.Internal},
		{"invalid argument", errs.New(errs.InvalidArgument, "x"), errs.InvalidArgument},
		{"not found", errs.New(errs.NotFound, "x"), errs.NotFound},
		{"permission denied", errs.New(errs.PermissionDenied, "x"), errs.PermissionDenied},
		{"unauthenticated", errs.New(errs.Unauthenticated, "x"), errs.Unauthenticated},
		{"unavailable", errs.Wrap(errs.Unavailable, errors.New("down"), "x"), errs.Unavailable},
		{"resource exhausted", errs.New(errs.ResourceExhausted, "x"), errs.ResourceExhausted},
		{"aborted", errs.New(errs.Aborted, "x"), errs.Aborted},
		{"failed precondition", errs.New(errs.FailedPrecondition, "x"), errs.FailedPrecondition},
		{"unimplemented", errs.New(errs.Unimplemented, "x"), errs.Unimplemented},
		{"wrapped with %w", fmt.Errorf("item 2: %w", errs.New(errs.NotFound, "x")), errs.NotFound},
		{"outermost Error wins", errs.Wrap(errs.Unavailable, errs.New(errs.NotFound, "inner"), "outer"), errs.Unavailable},
		{"joined", errors.Join(errors.New("a"), errs.New(errs.PermissionDenied, "x")), errs.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, errs.KindOf(tt.err))
		})
	}
}

func TestKindsAreDistinct(t *testing.T) {
	t.Parallel()
	kinds := []errs.Kind{errs.Internal, errs.InvalidArgument, errs.NotFound, errs.PermissionDenied, errs.Unauthenticated,
		errs.Unavailable, errs.ResourceExhausted, errs.Aborted, errs.FailedPrecondition, errs.Unimplemented}
	seen := map[errs.Kind]bool{}
	for _, k := range kinds {
		assert.False(t, seen[k], "kind %d twice", k)
		seen[k] = true
	}
	assert.Equal(t, errs.Kind(0), errs.Internal, "the zero Kind is Internal: an unclassified error is never a caller's fault")
}
