package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/phivault/tokenizer/internal/errs"
)

var kindCodes = map[errs.Kind]codes.Code{
	errs.Internal:           codes.Internal,
	errs.InvalidArgument:    codes.InvalidArgument,
	errs.NotFound:           codes.NotFound,
	errs.PermissionDenied:   codes.PermissionDenied,
	errs.Unauthenticated:    codes.Unauthenticated,
	errs.Unavailable:        codes.Unavailable,
	errs.ResourceExhausted:  codes.ResourceExhausted,
	errs.Aborted:            codes.Aborted,
	errs.FailedPrecondition: codes.FailedPrecondition,
	errs.Unimplemented:      codes.Unimplemented,
}

// Caller-safe messages of the shared sentinels, for errors that reach the edge
// wrapped by an adapter rather than as an *errs.Error.
const (
	msgConflict    = "conflict with a concurrent request; retry"
	msgUnavailable = "a backing service (database, key provider or audit log) is unavailable; retry later"
)

// toStatus is the one place errors become gRPC statuses (spicedb's habit): a switch of
// errors.Is/As. Callers see a caller-safe message; causes go to the server log, which
// never receives values (store errors carry SQLSTATEs, not PostgreSQL's text; Vault
// errors are redacted).
func toStatus(ctx context.Context, log *slog.Logger, err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	var e *errs.Error
	switch {
	case errors.As(err, &e):
		return errorStatus(ctx, log, e)
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "request deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled")
	case errors.Is(err, errs.ErrConflict):
		logCause(ctx, log, codes.Aborted, err)
		return status.New(codes.Aborted, msgConflict)
	case errors.Is(err, errs.ErrUnavailable):
		logCause(ctx, log, codes.Unavailable, err)
		return status.New(codes.Unavailable, msgUnavailable)
	}
	log.ErrorContext(ctx, "unexpected error", slog.String("error_type", errorType(err)))
	return internalStatus(ctx)
}

func errorStatus(ctx context.Context, log *slog.Logger, e *errs.Error) *status.Status {
	code := kindCodes[e.Kind]
	if e.Err != nil {
		logCause(ctx, log, code, e.Err)
	}
	if code == codes.Internal {
		return internalStatus(ctx)
	}
	st := status.New(code, e.Msg)
	if e.RetryAfter > 0 {
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
			st = d
		}
	}
	return st
}

func internalStatus(ctx context.Context) *status.Status {
	return status.New(codes.Internal, "internal error; see the server log for request "+requestID(ctx))
}

// causer is implemented by adapter errors that keep a connection-level cause for the
// server log (host, timeout), never a value.
type causer interface{ Cause() error }

func logCause(ctx context.Context, log *slog.Logger, code codes.Code, err error) {
	attrs := []any{slog.String("code", code.String()), slog.String("cause", err.Error()), slog.String("request_id", requestID(ctx))}
	var c causer
	if errors.As(err, &c) && c.Cause() != nil {
		attrs = append(attrs, slog.String("connection", c.Cause().Error()))
	}
	log.WarnContext(ctx, "request failed", attrs...)
}

func errorType(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	return fmt.Sprintf("%T", err)
}
