package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/store"
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

// toStatus is the one place domain errors become gRPC statuses. Callers see the
// error's safe message; causes go to the server log, which never receives values
// (store errors carry SQLSTATEs, not PostgreSQL's text).
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
		code := kindCodes[e.Kind]
		if e.Err != nil {
			attrs := []any{slog.String("code", code.String()), slog.String("cause", e.Err.Error())}
			var se *store.Error
			if errors.As(e.Err, &se) && se.Cause() != nil {
				attrs = append(attrs, slog.String("connection", se.Cause().Error()))
			}
			log.WarnContext(ctx, "request failed", attrs...)
		}
		if code == codes.Internal {
			return status.New(codes.Internal, "internal error; see the server log for request "+requestID(ctx))
		}
		return status.New(code, e.Msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "request deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled")
	}
	log.ErrorContext(ctx, "unexpected error", slog.String("error_type", errorType(err)))
	return status.New(codes.Internal, "internal error; see the server log for request "+requestID(ctx))
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
