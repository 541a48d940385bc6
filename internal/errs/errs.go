// Package errs carries domain errors from the engine to the API edge. An Error keeps
// the message a caller may see apart from its cause, which is only logged.
package errs

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel causes, wrapped (with %w) by every adapter, so that the edge can classify a
// failure without knowing which adapter it came from.
var (
	// ErrUnavailable means a backing service (PostgreSQL, the key provider, the audit
	// log) could not be reached or did not answer in time: retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrConflict means a serialization failure or deadlock between concurrent
	// transactions: the operation may be retried as it is.
	ErrConflict = errors.New("conflict")
)

// Kind is the class of failure; the server maps each to one gRPC code.
type Kind int

// Kinds of failure, named after the gRPC codes they become.
const (
	Internal Kind = iota
	InvalidArgument
	NotFound
	PermissionDenied
	Unauthenticated
	Unavailable
	ResourceExhausted
	Aborted
	FailedPrecondition
	Unimplemented
)

// Error is a failure with a caller-safe message. Msg never contains a value or token.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
	// RetryAfter, when positive, tells the caller how long to wait (google.rpc.RetryInfo).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an Error of kind with a formatted caller-safe message.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error of kind with a caller-safe message and a cause for the logs.
func Wrap(kind Kind, err error, msg string) *Error {
	return &Error{Kind: kind, Msg: msg, Err: err}
}

// KindOf returns the Kind of err, or Internal when err is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}
