package server

import (
	"context"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// batch describes one batch operation for runBatch: every batch RPC (tokenize,
// detokenize, delete, and the operations to come) is limits → decide → record → run →
// map results, and only the parts below differ.
type batch[Item, Result any] struct {
	op      string   // policy operation
	classes []string // the class of each item
	// purpose and justification of a reveal.
	purpose, justification string
	// check validates request fields beyond the items, after authorization.
	check func() error
	// run calls the engine with the items that may proceed.
	run func(ctx context.Context, eng *tokenizer.Engine, items []Item) ([]Result, error)
	// fail is the result of an item refused by policy.
	fail func(err error) Result
}

// runBatch authorizes items with policy.Decide, records the request for its audit
// event, runs the permitted items and puts every result back in its item's place.
// A returned error fails the whole request; item failures are in the results.
func runBatch[Item, Result any](ctx context.Context, s *Server, items []Item, b batch[Item, Result]) ([]Result, policy.Decision, error) {
	rec := audit.RecordFrom(ctx)
	rec.Items = len(items)
	for _, c := range b.classes {
		rec.Classes = append(rec.Classes, s.classLabel(c))
	}
	eng, err := s.app.Engine()
	if err != nil {
		return nil, policy.Decision{}, err
	}
	d := policy.Decide(policy.Request{
		Principal: principalFrom(ctx), Caller: callerID(ctx), Operation: b.op, Classes: b.classes,
		Known: s.app.IsClass, Purpose: b.purpose, Justification: b.justification,
	})
	if d.Err != nil {
		return nil, d, d.Err
	}
	if b.check != nil {
		if err := b.check(); err != nil {
			return nil, d, err
		}
	}
	if max := s.cfg.Limits.MaxItems; len(items) > max {
		return nil, d, errs.New(errs.InvalidArgument, "items: %d items exceed the limit of %d per request", len(items), max)
	}
	rec.Denied = d.Denied
	results := make([]Result, len(items))
	allowed := d.Allowed()
	for i, it := range d.Items {
		if it.Effect == policy.Deny {
			results[i] = b.fail(it.Err)
		}
	}
	if len(allowed) == 0 && len(items) > 0 {
		return results, d, nil
	}
	sub := make([]Item, len(allowed))
	for k, i := range allowed {
		sub[k] = items[i]
	}
	got, err := b.run(ctx, eng, sub)
	if err != nil {
		return nil, d, err
	}
	for k, i := range allowed {
		results[i] = got[k]
	}
	return results, d, nil
}

// classLabel is a class name fit for the audit log and metrics: a configured class,
// or "unknown" (the class field may hold anything a client sent, even a value).
func (s *Server) classLabel(name string) string {
	if s.app.IsClass(name) {
		return name
	}
	return "unknown"
}

// countItems records per-item outcomes in the audit record and the items metric.
func (s *Server) countItems(ctx context.Context, op string, classes []string, errList []error) {
	rec := audit.RecordFrom(ctx)
	for i, c := range classes {
		outcome := "OK"
		if errList[i] != nil {
			rec.ItemsFailed++
			outcome = kindCodes[errs.KindOf(errList[i])].String()
		}
		s.metrics.items.WithLabelValues(op, s.classLabel(c), outcome).Inc()
	}
}
