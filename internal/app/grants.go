package app

import (
	"context"
	"slices"
	"time"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/grant"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// GrantLimits are the configured bounds of new grants.
func (a *App) GrantLimits() grant.Limits {
	g := a.Config.Grants
	if g.MaxDuration == 0 { // a configuration that skipped Validate
		g = config.GrantsConfig{}
		g.MaxDuration, g.BreakGlassDuration, g.MaxBreakGlassDuration, g.MaxApprovals = 90*24*time.Hour, time.Hour, 4*time.Hour, 5
	}
	return grant.Limits{MaxDuration: g.MaxDuration, BreakGlassDuration: g.BreakGlassDuration,
		MaxBreakGlassDuration: g.MaxBreakGlassDuration, MaxApprovals: g.MaxApprovals}
}

// GrantGuard is the engine's guard for a reveal by caller for purpose: it reads the
// grants of the tokens' subjects from the database at every request (so a revocation
// on any replica holds from the next request on) and checks each item.
func (a *App) GrantGuard(caller, purpose string) tokenizer.Guard {
	return func(ctx context.Context, items []tokenizer.GuardItem) ([]tokenizer.GuardResult, error) {
		var ids []int64
		for _, it := range items {
			if it.Subject != 0 && !slices.Contains(ids, it.Subject) {
				ids = append(ids, it.Subject)
			}
		}
		var gs []grant.Grant
		if len(ids) > 0 {
			var err error
			if gs, err = a.Store.GrantsForSubjects(ctx, ids); err != nil {
				return nil, errs.Wrap(errs.Unavailable, err, "grants unavailable")
			}
		}
		now := time.Now()
		out := make([]tokenizer.GuardResult, len(items))
		for i, it := range items {
			out[i].Grant, out[i].Err = grant.Check(gs, grant.Request{Caller: caller, Class: it.Class, Purpose: purpose, SubjectID: it.Subject, Now: now})
		}
		return out, nil
	}
}

// NewGrant builds a grant to create from a request: a break-glass grant is the
// caller's own, for ETREAT, starting now, grants.break_glass_duration long unless
// not_after says less; others start at not_before (default now).
func (a *App) NewGrant(g grant.Grant, caller string, now time.Time) (grant.Grant, error) {
	l := a.GrantLimits()
	g.ID, g.Requester = grant.NewID(), caller
	if g.NotBefore.IsZero() {
		g.NotBefore = now
	}
	if g.BreakGlass {
		if g.Principal != "" && g.Principal != caller {
			return g, errs.New(errs.InvalidArgument, "principal: a break-glass grant is the caller's own; leave it empty")
		}
		g.Principal, g.NotBefore, g.RequiredApprovals = caller, now, 0
		if !slices.Contains(g.Purposes, policy.BreakGlass) {
			g.Purposes = append(g.Purposes, policy.BreakGlass)
		}
		if g.NotAfter.IsZero() {
			g.NotAfter = now.Add(l.BreakGlassDuration)
		}
		l.MaxDuration = l.MaxBreakGlassDuration
	}
	for i, p := range g.Purposes {
		if _, ok := policy.PurposesOfUse[p]; !ok {
			return g, errs.New(errs.InvalidArgument, "purposes[%d]: not an HL7 v3 PurposeOfUse code", i)
		}
	}
	return g, grant.Validate(g, l, a.IsClass)
}
