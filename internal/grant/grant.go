package grant

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/phivault/tokenizer/internal/errs"
)

// Grant is one grant.
type Grant struct {
	ID        string
	SubjectID int64
	// Principal is an identity or a pattern with * (as in the policy file).
	Principal         string
	Classes           []string // "*" for every class
	Purposes          []string
	NotBefore         time.Time
	NotAfter          time.Time
	RequiredApprovals int
	Requester         string
	Justification     string
	BreakGlass        bool
	// Deny makes the grant a denial: while active it refuses what it covers, whatever
	// permits say (a FHIR Consent deny provision). Purposes may then be "*".
	Deny       bool
	CreatedAt  time.Time
	Approvals  []Approval
	RevokedAt  *time.Time
	RevokedBy  string
	ReviewedAt *time.Time
	ReviewedBy string
}

// Approval is one approver's approval.
type Approval struct {
	By string
	At time.Time
}

// Filter selects grants for List.
type Filter struct {
	SubjectID            int64 // 0: any
	UnreviewedBreakGlass bool  // only break-glass grants not yet reviewed
}

// Store is what grants need of the database. Grants reference their subject and are
// deleted with it (an erased subject has no grants).
type Store interface {
	InsertGrant(ctx context.Context, g Grant) error
	// Grant returns the grant with id, with its approvals; errs NotFound if none.
	Grant(ctx context.Context, id string) (Grant, error)
	// ApproveGrant records approver's approval; false when approver had approved already.
	ApproveGrant(ctx context.Context, id, approver string, at time.Time) (bool, error)
	// RevokeGrant marks the grant revoked; false when it was revoked already.
	RevokeGrant(ctx context.Context, id, by string, at time.Time) (bool, error)
	// ReviewGrant marks a break-glass grant reviewed; false when it was already.
	ReviewGrant(ctx context.Context, id, by string, at time.Time) (bool, error)
	// GrantsForSubjects returns every grant of the subjects, with approvals.
	GrantsForSubjects(ctx context.Context, ids []int64) ([]Grant, error)
	// ListGrants returns the grants f selects, newest first, with approvals.
	ListGrants(ctx context.Context, f Filter) ([]Grant, error)
}

// NewID returns a fresh grant id: "g-" and 96 random bits in hex.
func NewID() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed") // does not happen on supported platforms
	}
	return "g-" + hex.EncodeToString(b)
}

// Limits bound new grants.
type Limits struct {
	MaxDuration           time.Duration // longest not_after − not_before
	BreakGlassDuration    time.Duration // default length of a break-glass grant
	MaxBreakGlassDuration time.Duration
	MaxApprovals          int
}

// Validate checks a new grant; errors name the field.
func Validate(g Grant, l Limits, known func(class string) bool) error {
	switch {
	case g.Principal == "" || len(g.Principal) > 512:
		return errs.New(errs.InvalidArgument, "principal: required, at most 512 bytes")
	case len(g.Classes) == 0:
		return errs.New(errs.InvalidArgument, "classes: at least one class (or \"*\")")
	case len(g.Purposes) == 0:
		return errs.New(errs.InvalidArgument, "purposes: at least one HL7 v3 PurposeOfUse code")
	case g.NotBefore.IsZero() || g.NotAfter.IsZero():
		return errs.New(errs.InvalidArgument, "not_before, not_after: required")
	case !g.NotAfter.After(g.NotBefore):
		return errs.New(errs.InvalidArgument, "not_after: must be after not_before")
	case !g.Deny && g.NotAfter.Sub(g.NotBefore) > l.MaxDuration:
		return errs.New(errs.InvalidArgument, "not_after: the grant is longer than the configured maximum of %s", l.MaxDuration)
	case g.RequiredApprovals < 0 || g.RequiredApprovals > l.MaxApprovals:
		return errs.New(errs.InvalidArgument, "required_approvals: between 0 and %d", l.MaxApprovals)
	case len(g.Justification) > 1024:
		return errs.New(errs.InvalidArgument, "justification: at most 1024 bytes")
	}
	for i, c := range g.Classes {
		if c != "*" && !known(c) {
			return errs.New(errs.InvalidArgument, "classes[%d]: not a configured class", i)
		}
	}
	return nil
}

// Active reports why g does not let anybody reveal at now, or "" when it does: revoked,
// not yet valid, expired, or waiting for approvals.
func (g Grant) Active(now time.Time) string {
	switch {
	case g.RevokedAt != nil:
		return "revoked"
	case now.Before(g.NotBefore):
		return "not valid before " + g.NotBefore.UTC().Format(time.RFC3339)
	case !now.Before(g.NotAfter):
		return "expired at " + g.NotAfter.UTC().Format(time.RFC3339)
	}
	if n := g.approvalsCounted(); n < g.RequiredApprovals {
		return fmt.Sprintf("approved by %d of %d required approvers", n, g.RequiredApprovals)
	}
	return ""
}

// approvalsCounted counts approvals by anyone but the requester.
func (g Grant) approvalsCounted() int {
	n := 0
	for _, a := range g.Approvals {
		if a.By != g.Requester {
			n++
		}
	}
	return n
}

// Matches reports whether g's principal (identity or pattern) covers caller.
func (g Grant) Matches(caller string) bool {
	if !strings.Contains(g.Principal, "*") {
		return g.Principal == caller
	}
	re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(g.Principal), `\*`, ".*") + "$")
	return re.MatchString(caller)
}

// Request is one reveal that needs a grant.
type Request struct {
	Caller, Class, Purpose string
	SubjectID              int64 // 0: the token has no subject (or does not exist)
	Now                    time.Time
}

// Check returns the id of a grant among gs that lets r through, or a
// PERMISSION_DENIED error whose message says why the closest grant does not. An active
// denial that covers r refuses it whatever the permits say.
func Check(gs []Grant, r Request) (string, error) {
	deny := func(reason string) error {
		return errs.New(errs.PermissionDenied, "class %s: revealable only under a grant: %s", r.Class, reason)
	}
	if r.SubjectID == 0 {
		return "", deny("no active grant for the caller on this token's subject")
	}
	for _, g := range gs {
		if g.Deny && g.covers(r) && g.Active(r.Now) == "" {
			return "", deny("denied by " + g.ID + " (a consent deny provision)")
		}
	}
	var reasons []string
	for _, g := range gs {
		if g.Deny || g.SubjectID != r.SubjectID || !g.Matches(r.Caller) {
			continue
		}
		why := g.Active(r.Now)
		switch {
		case why != "":
		case !has(g.Classes, r.Class):
			why = "class " + r.Class + " not granted"
		case !has(g.Purposes, r.Purpose):
			why = "purpose " + r.Purpose + " not granted"
		default:
			return g.ID, nil
		}
		reasons = append(reasons, "grant "+g.ID+": "+why)
	}
	if len(reasons) == 0 {
		return "", deny("no grant for the caller on this token's subject")
	}
	return "", deny(strings.Join(reasons, "; "))
}

// covers reports whether g names r's subject, caller, class and purpose.
func (g Grant) covers(r Request) bool {
	return g.SubjectID == r.SubjectID && g.Matches(r.Caller) && has(g.Classes, r.Class) && has(g.Purposes, r.Purpose)
}

func has(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}
