package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phivault/tokenizer/internal/errs"
)

// ErrNotFound means no row matched. Unavailability and conflicts wrap the shared
// sentinels errs.ErrUnavailable and errs.ErrConflict; test with errors.Is.
var (
	// ErrNotFound means no row matched.
	ErrNotFound = errors.New("not found")
)

// Error is a database failure described without any value: operation and SQLSTATE.
type Error struct {
	Op       string
	SQLState string
	kind     error
	cause    error // network-level cause, for server logs; never a PgError
}

// Cause returns the connection-level cause for server-side logs (host, timeout), or nil.
// It never holds PostgreSQL's message text.
func (e *Error) Cause() error { return e.cause }

func (e *Error) Error() string {
	if e.SQLState != "" {
		return fmt.Sprintf("postgres: %s failed (SQLSTATE %s)", e.Op, e.SQLState)
	}
	return fmt.Sprintf("postgres: %s failed: %v", e.Op, e.kind)
}

// Unwrap exposes the sentinel kind (errs.ErrUnavailable, errs.ErrConflict, ErrNotFound), if any.
func (e *Error) Unwrap() error { return e.kind }

// classify turns a pgx error into an *Error, the one place SQLSTATEs are interpreted.
// The PostgreSQL message and detail are dropped: they may quote row values.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &Error{Op: op, kind: ErrNotFound}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		e := &Error{Op: op, SQLState: pgErr.Code}
		switch pgErr.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			e.kind = errs.ErrConflict
		case "23503": // foreign_key_violation: a subject erased while a mapping or grant of it was written
			e.kind = errs.ErrConflict
		case "57014", "57P01", "57P02", "57P03", "53300", "08000", "08003", "08006": // canceled, shutdown, too many connections, connection failures
			e.kind = errs.ErrUnavailable
		}
		return e
	}
	// Anything else is the connection: refused, reset, timed out, or the context ended.
	if errors.Is(err, context.Canceled) {
		return &Error{Op: op, kind: context.Canceled}
	}
	return &Error{Op: op, kind: errs.ErrUnavailable, cause: err}
}
