package server

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/policy"
)

// operations names the audited RPCs; health and reflection are not audited.
var operations = map[string]string{
	"/tokenizer.v1.TokenizerService/Tokenize":         "tokenize",
	"/tokenizer.v1.TokenizerService/Detokenize":       "detokenize",
	"/tokenizer.v1.TokenizerService/TokenizeStream":   "tokenize_stream",
	"/tokenizer.v1.TokenizerService/DetokenizeStream": "detokenize_stream",
	"/tokenizer.v1.TokenizerService/DeleteTokens":     "delete_tokens",
	"/tokenizer.v1.TokenizerService/ListClasses":      "list_classes",
	"/tokenizer.v1.AuditService/VerifyAudit":          "verify_audit",
	"/tokenizer.v1.AuditService/ExportAudit":          "export_audit",
	"/tokenizer.v1.AuditService/ListDisclosures":      "list_disclosures",
}

// classLabel is a class name fit for the audit log: a configured class, or "unknown"
// (the class field may hold anything a client sent, even a value).
func (s *Server) classLabel(name string) string {
	if s.isClass(name) {
		return name
	}
	return "unknown"
}

// codeNames are the gRPC codes as google.rpc.Code spells them.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "UNKNOWN"
}

var errAuditUnavailable = status.Error(codes.Unavailable, "audit log unavailable: the request was not completed and nothing was revealed")

// audit appends the event of one request (or stream message) and waits until it is
// durable. When it fails, the caller must return errAuditUnavailable instead of its
// response: nothing leaves without its audit record.
func (s *Server) audit(ctx context.Context, op string, rec *audit.Record, err error) error {
	caller, _ := policy.CallerFrom(ctx)
	if caller.ID == "" {
		caller.ID = "unauthenticated"
	}
	ev := &audit.Event{
		Time: time.Now().UTC().Truncate(time.Microsecond), RequestID: requestID(ctx), Caller: caller.ID,
		Operation: op, Classes: rec.Classes, Items: rec.Items, ItemsFailed: rec.ItemsFailed,
		Outcome: codeName(status.Code(err)), PurposeOfUse: rec.PurposeOfUse, Justification: rec.Justification,
		ClientAddress: clientAddress(ctx), BreakGlass: rec.BreakGlass, Masked: rec.Masked, TokenDigests: rec.TokenDigests,
	}
	if err != nil {
		ev.Reason = status.Convert(err).Message()
	} else if len(rec.Denied) > 0 {
		slices.Sort(rec.Denied)
		ev.Reason = "denied by policy: " + strings.Join(slices.Compact(rec.Denied), ", ")
	}
	if aerr := s.auditSink.Append(ctx, ev); aerr != nil {
		s.log.ErrorContext(ctx, "audit append failed", slog.String("operation", op), slog.String("request_id", requestID(ctx)))
		s.metrics.auditFailures.Inc()
		return errAuditUnavailable
	}
	return nil
}

// auditedMessage handles one message of a stream: its own record, its own event,
// written before the response is sent.
func auditedMessage[T any](s *Server, ctx context.Context, op string, handle func(context.Context) (T, error)) (T, error) {
	audit.RecordFrom(ctx).Audited = true
	mctx, rec := audit.WithRecord(ctx)
	resp, err := handle(mctx)
	if err != nil {
		err = toStatus(mctx, s.log, err).Err()
	}
	if aerr := s.audit(mctx, op, rec, err); aerr != nil {
		var zero T
		return zero, aerr
	}
	return resp, err
}
