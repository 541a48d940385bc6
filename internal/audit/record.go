package audit

import "context"

// Record is what a handler knows about its request that the audit event needs. The
// server puts one in the request context; handlers fill it.
type Record struct {
	Classes       []string
	Items         int
	ItemsFailed   int
	TokenDigests  [][]byte
	PurposeOfUse  string
	Justification string
	BreakGlass    bool
	Masked        bool
	// Denied lists per-item refusals ("class mrn: detokenize"), for the event's reason.
	Denied []string
	// Audited is set by stream handlers that append their own events, per message.
	Audited bool
}

type recordKey struct{}

// WithRecord returns ctx carrying a new record.
func WithRecord(ctx context.Context) (context.Context, *Record) {
	r := &Record{}
	return context.WithValue(ctx, recordKey{}, r), r
}

// RecordFrom returns the record in ctx, or a throwaway one.
func RecordFrom(ctx context.Context) *Record {
	if r, ok := ctx.Value(recordKey{}).(*Record); ok {
		return r
	}
	return &Record{}
}
