package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/grant"
)

func testGrants(t *testing.T, s Store) {
	ctx := t.Context()
	a, b := insertSubject(t, s), insertSubject(t, s)
	now := time.Now().UTC().Truncate(time.Microsecond)
	g := grant.Grant{ID: grant.NewID(), SubjectID: a.ID, Principal: "spiffe://x/doc/*", Classes: []string{"ssn", "mrn"},
		Purposes: []string{"TREAT"}, NotBefore: now, NotAfter: now.Add(time.Hour), RequiredApprovals: 2, Requester: "alice"}
	require.NoError(t, s.InsertGrant(ctx, g))
	bg := grant.Grant{ID: grant.NewID(), SubjectID: b.ID, Principal: "bob", Classes: []string{"*"}, Purposes: []string{"ETREAT"},
		NotBefore: now, NotAfter: now.Add(time.Hour), Requester: "bob", Justification: "code blue", BreakGlass: true}
	require.NoError(t, s.InsertGrant(ctx, bg))

	ok, err := s.ApproveGrant(ctx, g.ID, "carol", now)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = s.ApproveGrant(ctx, g.ID, "carol", now.Add(time.Second))
	require.NoError(t, err)
	assert.False(t, ok, "one approval per approver")
	_, err = s.ApproveGrant(ctx, g.ID, "dave", now.Add(time.Second))
	require.NoError(t, err)

	got, err := s.Grant(ctx, g.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"ssn", "mrn"}, got.Classes)
	assert.Equal(t, 2, got.RequiredApprovals)
	require.Len(t, got.Approvals, 2)
	assert.Equal(t, "carol", got.Approvals[0].By)
	assert.True(t, got.NotAfter.Equal(g.NotAfter))
	assert.Nil(t, got.RevokedAt)

	unreviewed, err := s.ListGrants(ctx, grant.Filter{UnreviewedBreakGlass: true})
	require.NoError(t, err)
	require.Len(t, unreviewed, 1)
	assert.Equal(t, bg.ID, unreviewed[0].ID)
	ok, err = s.ReviewGrant(ctx, bg.ID, "privacy-officer", now)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = s.ReviewGrant(ctx, g.ID, "privacy-officer", now)
	require.NoError(t, err)
	assert.False(t, ok, "only break-glass grants are reviewed")
	unreviewed, err = s.ListGrants(ctx, grant.Filter{UnreviewedBreakGlass: true})
	require.NoError(t, err)
	assert.Empty(t, unreviewed)

	ok, err = s.RevokeGrant(ctx, g.ID, "erin", now)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = s.RevokeGrant(ctx, g.ID, "erin", now)
	require.NoError(t, err)
	assert.False(t, ok, "revoked once")
	forA, err := s.GrantsForSubjects(ctx, []int64{a.ID})
	require.NoError(t, err)
	require.Len(t, forA, 1)
	require.NotNil(t, forA[0].RevokedAt)
	assert.Equal(t, "erin", forA[0].RevokedBy)

	_, err = s.ForgetSubject(ctx, a.ID)
	require.NoError(t, err)
	all, err := s.ListGrants(ctx, grant.Filter{})
	require.NoError(t, err)
	require.Len(t, all, 1, "a subject's grants go with it")
	assert.Equal(t, bg.ID, all[0].ID)
	_, err = s.Grant(ctx, g.ID)
	assert.Error(t, err)
}
