package memory

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/grant"
)

var _ grant.Store = (*Store)(nil)

func copyGrant(g *grant.Grant) grant.Grant {
	c := *g
	c.Classes, c.Purposes, c.Approvals = slices.Clone(g.Classes), slices.Clone(g.Purposes), slices.Clone(g.Approvals)
	return c
}

// InsertGrant implements grant.Store.
func (s *Store) InsertGrant(ctx context.Context, g grant.Grant) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subjects[g.SubjectID]; !ok {
		return errs.New(errs.FailedPrecondition, "grant: subject does not exist")
	}
	if s.grants == nil {
		s.grants = map[string]*grant.Grant{}
	}
	if _, dup := s.grants[g.ID]; dup {
		return errs.New(errs.FailedPrecondition, "grant: id exists")
	}
	c := copyGrant(&g)
	c.CreatedAt, c.Approvals = s.now(), nil
	s.grants[g.ID] = &c
	return ctx.Err()
}

// Grant implements grant.Store.
func (s *Store) Grant(ctx context.Context, id string) (grant.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return grant.Grant{}, errs.New(errs.NotFound, "grant: no such grant")
	}
	return copyGrant(g), ctx.Err()
}

// update applies fn to grant id under the lock; fn reports whether it changed it.
func (s *Store) update(ctx context.Context, id string, fn func(g *grant.Grant) bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return false, ctx.Err()
	}
	return fn(g), ctx.Err()
}

// ApproveGrant implements grant.Store.
func (s *Store) ApproveGrant(ctx context.Context, id, approver string, at time.Time) (bool, error) {
	return s.update(ctx, id, func(g *grant.Grant) bool {
		if slices.ContainsFunc(g.Approvals, func(a grant.Approval) bool { return a.By == approver }) {
			return false
		}
		g.Approvals = append(g.Approvals, grant.Approval{By: approver, At: at})
		return true
	})
}

// RevokeGrant implements grant.Store.
func (s *Store) RevokeGrant(ctx context.Context, id, by string, at time.Time) (bool, error) {
	return s.update(ctx, id, func(g *grant.Grant) bool {
		if g.RevokedAt != nil {
			return false
		}
		g.RevokedAt, g.RevokedBy = &at, by
		return true
	})
}

// ReviewGrant implements grant.Store.
func (s *Store) ReviewGrant(ctx context.Context, id, by string, at time.Time) (bool, error) {
	return s.update(ctx, id, func(g *grant.Grant) bool {
		if !g.BreakGlass || g.ReviewedAt != nil {
			return false
		}
		g.ReviewedAt, g.ReviewedBy = &at, by
		return true
	})
}

// GrantsForSubjects implements grant.Store.
func (s *Store) GrantsForSubjects(ctx context.Context, ids []int64) ([]grant.Grant, error) {
	return s.selectGrants(ctx, func(g *grant.Grant) bool { return slices.Contains(ids, g.SubjectID) })
}

// ListGrants implements grant.Store.
func (s *Store) ListGrants(ctx context.Context, f grant.Filter) ([]grant.Grant, error) {
	return s.selectGrants(ctx, func(g *grant.Grant) bool {
		return (f.SubjectID == 0 || g.SubjectID == f.SubjectID) && (!f.UnreviewedBreakGlass || (g.BreakGlass && g.ReviewedAt == nil))
	})
}

func (s *Store) selectGrants(ctx context.Context, keep func(*grant.Grant) bool) ([]grant.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []grant.Grant
	for _, g := range s.grants {
		if keep(g) {
			out = append(out, copyGrant(g))
		}
	}
	slices.SortFunc(out, func(a, b grant.Grant) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, ctx.Err()
}
