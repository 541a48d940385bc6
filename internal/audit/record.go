package audit

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Record is what a handler knows about its request that the audit event needs. The
// server puts one in the request context; handlers fill it.
type Record struct {
	// Caller and ClientAddress are set by authentication (empty: unauthenticated).
	Caller        string
	ClientAddress string
	Classes       []string
	Items         int
	ItemsFailed   int
	TokenDigests  [][]byte
	PurposeOfUse  string
	Justification string
	BreakGlass    bool
	Masked        bool
	// SubjectDigests and Erased are as in Event.
	SubjectDigests [][]byte
	Erased         map[string]int64
	Grants         []string
	// OnBehalfOf is as in Event; the transport sets it from the request's metadata.
	OnBehalfOf string
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

// Event is the audit event of one request (or stream message) described by r, with
// its outcome: a google.rpc.Code name and, for failures or refusals, a reason.
func (r *Record) Event(op, requestID, outcome, reason string) *Event {
	caller := r.Caller
	if caller == "" {
		caller = "unauthenticated"
	}
	if reason == "" && len(r.Denied) > 0 {
		d := slices.Compact(slices.Sorted(slices.Values(r.Denied)))
		reason = "denied by policy: " + strings.Join(d, ", ")
	}
	return &Event{
		Time: time.Now().UTC().Truncate(time.Microsecond), RequestID: requestID, Caller: caller,
		Operation: op, Classes: r.Classes, Items: r.Items, ItemsFailed: r.ItemsFailed,
		Outcome: outcome, Reason: reason, PurposeOfUse: r.PurposeOfUse, Justification: r.Justification,
		ClientAddress: r.ClientAddress, BreakGlass: r.BreakGlass, Masked: r.Masked, TokenDigests: r.TokenDigests,
		SubjectDigests: r.SubjectDigests, Erased: r.Erased, Grants: r.Grants, OnBehalfOf: r.OnBehalfOf,
	}
}
