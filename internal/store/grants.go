package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/grant"
)

var _ grant.Store = (*Store)(nil)

const grantColumns = `g.id, g.subject_id, g.principal, g.classes, g.purposes, g.not_before, g.not_after,
	g.required_approvals, g.requester, g.justification, g.break_glass, g.deny, g.created_at,
	g.revoked_at, coalesce(g.revoked_by, ''), g.reviewed_at, coalesce(g.reviewed_by, ''),
	coalesce((SELECT array_agg(a.approver ORDER BY a.approved_at) FROM grant_approvals a WHERE a.grant_id = g.id), '{}'),
	coalesce((SELECT array_agg(a.approved_at ORDER BY a.approved_at) FROM grant_approvals a WHERE a.grant_id = g.id), '{}')`

// InsertGrant stores a new grant.
func (s *Store) InsertGrant(ctx context.Context, g grant.Grant) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO grants (id, subject_id, principal, classes, purposes, not_before, not_after,
		                    required_approvals, requester, justification, break_glass, deny)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		g.ID, g.SubjectID, g.Principal, g.Classes, g.Purposes, g.NotBefore, g.NotAfter,
		int32(g.RequiredApprovals), g.Requester, g.Justification, g.BreakGlass, g.Deny)
	return classify("insert grant", err)
}

func (s *Store) queryGrants(ctx context.Context, op, where string, args ...any) ([]grant.Grant, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+grantColumns+` FROM grants g `+where, args...)
	if err != nil {
		return nil, classify(op, err)
	}
	var out []grant.Grant
	var g grant.Grant
	var req int32
	var approvers []string
	var times []time.Time
	_, err = pgx.ForEachRow(rows, []any{&g.ID, &g.SubjectID, &g.Principal, &g.Classes, &g.Purposes, &g.NotBefore, &g.NotAfter,
		&req, &g.Requester, &g.Justification, &g.BreakGlass, &g.Deny, &g.CreatedAt, &g.RevokedAt, &g.RevokedBy, &g.ReviewedAt, &g.ReviewedBy,
		&approvers, &times}, func() error {
		g.RequiredApprovals = int(req)
		for i := range approvers {
			g.Approvals = append(g.Approvals, grant.Approval{By: approvers[i], At: times[i]})
		}
		out = append(out, g)
		g = grant.Grant{}
		return nil
	})
	return out, classify(op, err)
}

// Grant returns one grant.
func (s *Store) Grant(ctx context.Context, id string) (grant.Grant, error) {
	gs, err := s.queryGrants(ctx, "read grant", `WHERE g.id = $1`, id)
	if err != nil {
		return grant.Grant{}, err
	}
	if len(gs) == 0 {
		return grant.Grant{}, errs.New(errs.NotFound, "grant: no such grant")
	}
	return gs[0], nil
}

// ApproveGrant records an approval.
func (s *Store) ApproveGrant(ctx context.Context, id, approver string, at time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO grant_approvals (grant_id, approver, approved_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, id, approver, at)
	if err != nil {
		return false, classify("approve grant", err)
	}
	return tag.RowsAffected() == 1, nil
}

// RevokeGrant marks a grant revoked.
func (s *Store) RevokeGrant(ctx context.Context, id, by string, at time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE grants SET revoked_at = $3, revoked_by = $2 WHERE id = $1 AND revoked_at IS NULL`, id, by, at)
	if err != nil {
		return false, classify("revoke grant", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReviewGrant marks a break-glass grant reviewed.
func (s *Store) ReviewGrant(ctx context.Context, id, by string, at time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE grants SET reviewed_at = $3, reviewed_by = $2 WHERE id = $1 AND break_glass AND reviewed_at IS NULL`, id, by, at)
	if err != nil {
		return false, classify("review grant", err)
	}
	return tag.RowsAffected() == 1, nil
}

// GrantsForSubjects returns the grants of the subjects.
func (s *Store) GrantsForSubjects(ctx context.Context, ids []int64) ([]grant.Grant, error) {
	return s.queryGrants(ctx, "read grants", `WHERE g.subject_id = ANY($1::int8[])`, ids)
}

// ListGrants returns the grants f selects, newest first.
func (s *Store) ListGrants(ctx context.Context, f grant.Filter) ([]grant.Grant, error) {
	return s.queryGrants(ctx, "list grants", `
		WHERE ($1 = 0 OR g.subject_id = $1) AND (NOT $2 OR (g.break_glass AND g.reviewed_at IS NULL))
		ORDER BY g.created_at DESC, g.id`, f.SubjectID, f.UnreviewedBreakGlass)
}
