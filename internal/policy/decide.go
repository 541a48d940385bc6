package policy

import (
	"strings"
	"unicode/utf8"

	"github.com/phivault/tokenizer/internal/errs"
)

// MaxJustificationBytes bounds the free-text justification of a reveal.
const MaxJustificationBytes = 1024

// Request is everything an authorization decision looks at. It carries no value and
// no token: only who asks, for what operation, on which classes, and why.
type Request struct {
	// Principal is the caller's policy entry (nil: the caller has no entry).
	Principal *Principal
	// Caller is the caller's identity, for messages.
	Caller string
	// Operation is a class operation (OpTokenize, OpDetokenize, OpDelete) or a request
	// operation (OpAuditExport, ...).
	Operation string
	// Classes is the class of each item, for class operations.
	Classes []string
	// Known reports whether a class is configured. Items of unknown classes are let
	// through so that the engine refuses them as bad input, without echoing the name.
	Known func(class string) bool
	// Purpose and Justification are the reveal's purpose of use and its free text.
	Purpose, Justification string
	// OverQuota is set when the principal has used up its tokenize quota of new values
	// this minute (Policy.TokenizeQuota).
	OverQuota bool
}

// Effect is what one item may get.
type Effect int

// Effects, from none to all.
const (
	// Deny refuses the item with PERMISSION_DENIED.
	Deny Effect = iota
	// Mask reveals the item masked (detokenize_masked).
	Mask
	// Allow performs the operation in full.
	Allow
	// Grant reveals the item only if an active grant covers its subject, class and
	// purpose (detokenize_granted); the engine asks grant.Check after the lookup.
	Grant
)

// Item is the decision on one item.
type Item struct {
	Effect Effect
	// Err is the item's PERMISSION_DENIED when Effect is Deny.
	Err error
}

// Decision is the outcome of Decide: either Err (the whole request is refused) or one
// Item per request item.
type Decision struct {
	Err   error
	Items []Item
	// BreakGlass is set when the request reveals under ETREAT.
	BreakGlass bool
	// Denied lists the per-item refusals ("class mrn: detokenize"), for the audit event.
	Denied []string
}

// Allowed returns the indexes of the items that proceed (Allow or Mask).
func (d Decision) Allowed() []int {
	var out []int
	for i, it := range d.Items {
		if it.Effect != Deny {
			out = append(out, i)
		}
	}
	return out
}

// Decide is the one authorization decision of the service: a pure function of the
// policy entry and the request. Handlers call it once per request (or stream message).
func Decide(req Request) Decision {
	switch req.Operation {
	case OpTokenize:
		d := decideItems(req, req.Operation, "")
		if d.Err == nil && req.OverQuota {
			return Decision{Err: errs.New(errs.ResourceExhausted, "caller %s has used up its quota of %d new values per minute; retry later", req.Caller, req.Principal.RateLimit.NewValuesPerMinute)}
		}
		return d
	case OpDelete:
		return decideItems(req, req.Operation, "")
	case OpDetokenize:
		if err := checkPurpose(req); err != nil {
			return Decision{Err: err}
		}
		d := decideItems(req, OpDetokenize, OpDetokenizeMasked)
		d.BreakGlass = d.Err == nil && req.Purpose == BreakGlass
		return d
	}
	if req.Operation == OpGrantBreakGlass {
		return decideBreakGlassGrant(req)
	}
	if !req.Principal.Allowed(req.Operation) {
		return Decision{Err: errs.New(errs.PermissionDenied, "caller %s may not %s", req.Caller, req.Operation)}
	}
	return Decision{}
}

// verbs name class operations in whole-request refusals.
var verbs = map[string]string{OpTokenize: "tokenize", OpDetokenize: "detokenize", OpDelete: "delete tokens"}

// decideItems authorizes op item by item; fallback (detokenize_masked) is the lesser
// operation that still lets an item through, masked.
func decideItems(req Request, op, fallback string) Decision {
	pr := req.Principal
	granted := op == OpDetokenize && pr.CanAny(OpDetokenizeGranted)
	if !pr.CanAny(op) && (fallback == "" || !pr.CanAny(fallback)) && !granted {
		return Decision{Err: errs.New(errs.PermissionDenied, "caller %s may not %s in any class", req.Caller, verbs[op])}
	}
	d := Decision{Items: make([]Item, len(req.Classes))}
	for i, c := range req.Classes {
		switch {
		case req.Known != nil && !req.Known(c):
			d.Items[i].Effect = Allow
		case granted && pr.Can(c, OpDetokenizeGranted):
			d.Items[i].Effect = Grant
		case pr.Can(c, op):
			d.Items[i].Effect = Allow
		case fallback != "" && pr.Can(c, fallback):
			d.Items[i].Effect = Mask
		default:
			d.Items[i].Err = errs.New(errs.PermissionDenied, "class %s: caller may not %s", c, op)
			d.Denied = append(d.Denied, "class "+c+": "+op)
		}
	}
	return d
}

// checkPurpose validates the purpose of use and the justification, then checks that
// the principal may invoke the purpose: ETREAT (break-glass) needs the break_glass
// grant and a justification.
func checkPurpose(req Request) error {
	p := req.Purpose
	if p == "" {
		return errs.New(errs.InvalidArgument, "purpose_of_use: required on every detokenize (an HL7 v3 PurposeOfUse code such as TREAT)")
	}
	if _, ok := PurposesOfUse[p]; !ok {
		return errs.New(errs.InvalidArgument, "purpose_of_use: not a known HL7 v3 PurposeOfUse code")
	}
	if len(req.Justification) > MaxJustificationBytes || !utf8.ValidString(req.Justification) {
		return errs.New(errs.InvalidArgument, "justification: at most %d bytes of UTF-8", MaxJustificationBytes)
	}
	if p == BreakGlass && strings.TrimSpace(req.Justification) == "" {
		return errs.New(errs.InvalidArgument, "justification: required for break-glass (purpose_of_use ETREAT)")
	}
	if !req.Principal.MayPurpose(p) {
		if p == BreakGlass {
			return errs.New(errs.PermissionDenied, "caller %s may not break the glass (ETREAT)", req.Caller)
		}
		return errs.New(errs.PermissionDenied, "caller %s may not invoke purpose of use %s", req.Caller, p)
	}
	return nil
}

// OpGrantBreakGlass creates a break-glass grant: not granted in the policy file, but
// by break_glass: true (with a justification), like ETREAT.
const OpGrantBreakGlass = "grant_break_glass"

func decideBreakGlassGrant(req Request) Decision {
	if len(req.Justification) > MaxJustificationBytes || !utf8.ValidString(req.Justification) {
		return Decision{Err: errs.New(errs.InvalidArgument, "justification: at most %d bytes of UTF-8", MaxJustificationBytes)}
	}
	if strings.TrimSpace(req.Justification) == "" {
		return Decision{Err: errs.New(errs.InvalidArgument, "justification: required for a break-glass grant")}
	}
	if !req.Principal.MayPurpose(BreakGlass) {
		return Decision{Err: errs.New(errs.PermissionDenied, "caller %s may not break the glass", req.Caller)}
	}
	return Decision{}
}
