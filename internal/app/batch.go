package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// Batch describes one batch operation for RunBatch. Every batch operation (tokenize,
// detokenize, delete, and those to come: FHIR resources, grants, bulk) is
// record → decide → check → limit → run → map back, and only the parts below differ.
type Batch[Item, Result any] struct {
	Op      string   // the policy operation
	Classes []string // the class of each item
	// Purpose and Justification of a reveal.
	Purpose, Justification string
	// Check validates request fields beyond the items, after authorization.
	Check func() error
	// Run calls the engine with the items that may proceed.
	Run func(ctx context.Context, eng *tokenizer.Engine, items []Item) ([]Result, error)
	// Fail is the result of an item refused by policy.
	Fail func(err error) Result
	// Mark, when set, tells an item that proceeds what policy decided for it (Allow,
	// Mask, or Grant: only under a grant), before Run.
	Mark func(item *Item, e policy.Effect)
}

// RunBatch records the request for its audit event, authorizes it once with
// policy.Decide (caller and policy entry from ctx), runs the permitted items and puts
// every result back in its item's place. A returned error fails the whole request;
// item failures are in the results.
func RunBatch[Item, Result any](ctx context.Context, a *App, items []Item, b Batch[Item, Result]) ([]Result, policy.Decision, error) {
	rec := audit.RecordFrom(ctx)
	rec.Items = len(items)
	for _, c := range b.Classes {
		rec.Classes = append(rec.Classes, a.ClassLabel(c))
	}
	recordPurpose(rec, b.Purpose, b.Justification)
	eng, err := a.Engine()
	if err != nil {
		return nil, policy.Decision{}, err
	}
	caller, _ := policy.CallerFrom(ctx)
	pr := policy.PrincipalFrom(ctx)
	d := policy.Decide(policy.Request{
		Principal: pr, Caller: caller.ID, Operation: b.Op, Classes: b.Classes,
		Known: a.IsClass, Purpose: b.Purpose, Justification: b.Justification,
		OverQuota: b.Op == policy.OpTokenize && !a.Policies.Current().TokenizeQuota(pr, time.Now()),
	})
	if d.Err != nil {
		return nil, d, d.Err
	}
	if b.Check != nil {
		if err := b.Check(); err != nil {
			return nil, d, err
		}
	}
	if limit := a.Config.Limits.MaxItems; len(items) > limit {
		return nil, d, errs.New(errs.InvalidArgument, "items: %d items exceed the limit of %d per request", len(items), limit)
	}
	rec.Denied = d.Denied
	results, err := runAllowed(ctx, eng, items, d, b)
	return results, d, err
}

func runAllowed[Item, Result any](ctx context.Context, eng *tokenizer.Engine, items []Item, d policy.Decision, b Batch[Item, Result]) ([]Result, error) {
	results := make([]Result, len(items))
	allowed := d.Allowed()
	if d.Items == nil {
		// A request operation (subject_forget, ...): Decide allowed the whole request.
		allowed = make([]int, len(items))
		for i := range allowed {
			allowed[i] = i
		}
	}
	for i, it := range d.Items {
		if it.Effect == policy.Deny {
			results[i] = b.Fail(it.Err)
		}
	}
	if len(allowed) == 0 && len(items) > 0 {
		return results, nil
	}
	sub := make([]Item, len(allowed))
	for k, i := range allowed {
		sub[k] = items[i]
		if b.Mark != nil && d.Items != nil {
			b.Mark(&sub[k], d.Items[i].Effect)
		}
	}
	got, err := b.Run(ctx, eng, sub)
	if err != nil {
		return nil, err
	}
	for k, i := range allowed {
		results[i] = got[k]
	}
	return results, nil
}

// recordPurpose puts the purpose of use and justification in the audit record when
// they are well-formed (a malformed one is refused, and its text is not kept).
func recordPurpose(rec *audit.Record, purpose, justification string) {
	if _, known := policy.PurposesOfUse[purpose]; known {
		rec.PurposeOfUse = purpose
		rec.BreakGlass = purpose == policy.BreakGlass
	}
	if utf8.ValidString(justification) && len(justification) <= policy.MaxJustificationBytes {
		rec.Justification = justification
	}
}

// ClassLabel is a class name fit for the audit log and metrics: a configured class, or
// "unknown" (the class field may hold anything a client sent, even a value).
func (a *App) ClassLabel(name string) string {
	if a.IsClass(name) {
		return name
	}
	return "unknown"
}

// CountReveals feeds the caller's one-minute reveal window with n reveals and misses
// NOT_FOUND misses (guessed tokens count like reveals). When this call takes the caller
// over its reveal threshold, or over its miss threshold (a "harvest" anomaly), it writes
// an anomaly event to the audit log (once per window each) and returns the policy
// entry's ID, for the anomaly metric; else "".
func (a *App) CountReveals(ctx context.Context, requestID string, n, misses int) string {
	pr := policy.PrincipalFrom(ctx)
	pol, now, id := a.Policies.Current(), time.Now(), ""
	if crossed, inWindow := pol.Revealed(pr, n+misses, now); crossed {
		reason := fmt.Sprintf("revealed %d values within a minute, above the threshold of %d", inWindow, pr.RateLimit.RevealsPerMinute)
		id = a.anomaly(ctx, requestID, pr, inWindow, reason)
	}
	if crossed, inWindow := pol.Missed(pr, misses, now); crossed {
		reason := fmt.Sprintf("harvest: %d unknown tokens presented within a minute, above the threshold of %d", inWindow, pr.MissThreshold())
		id = a.anomaly(ctx, requestID, pr, inWindow, reason)
	}
	return id
}

// CountCreated feeds the caller's window of new static mappings; above its
// enumeration threshold it writes an "enumeration" anomaly event (once per window) and
// returns the policy entry's ID, else "".
func (a *App) CountCreated(ctx context.Context, requestID string, n int) string {
	pr := policy.PrincipalFrom(ctx)
	crossed, inWindow := a.Policies.Current().Created(pr, n, time.Now())
	if !crossed {
		return ""
	}
	reason := fmt.Sprintf("enumeration: %d new values tokenized within a minute, above the threshold of %d", inWindow, pr.EnumerationThreshold())
	return a.anomaly(ctx, requestID, pr, inWindow, reason)
}

// anomaly writes an anomaly event for pr and logs it; it returns pr's ID.
func (a *App) anomaly(ctx context.Context, requestID string, pr *policy.Principal, inWindow int, reason string) string {
	caller := audit.RecordFrom(ctx)
	rec := &audit.Record{Caller: caller.Caller, ClientAddress: caller.ClientAddress, Items: inWindow}
	if err := a.Audit.Append(ctx, rec.Event("anomaly", requestID, "OK", reason)); err != nil {
		a.Log.ErrorContext(ctx, "anomaly event not written", slog.String("request_id", requestID))
	}
	a.Log.WarnContext(ctx, "reveal anomaly", slog.String("principal", pr.ID), slog.Int("count_in_window", inWindow))
	return pr.ID
}
