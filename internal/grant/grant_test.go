package grant

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func base() Grant {
	return Grant{ID: "g-1", SubjectID: 7, Principal: "spiffe://h/doc/*", Classes: []string{"ssn"}, Purposes: []string{"TREAT"},
		NotBefore: t0, NotAfter: t0.Add(time.Hour), RequiredApprovals: 2, Requester: "alice",
		Approvals: []Approval{{By: "carol"}, {By: "dave"}}}
}

func TestCheck(t *testing.T) {
	revoked := t0
	cases := []struct {
		name   string
		mutate func(g *Grant, r *Request)
		reason string // "" allowed
	}{
		{"within the window", func(*Grant, *Request) {}, ""},
		{"any class", func(g *Grant, r *Request) { g.Classes = []string{"*"}; r.Class = "mrn" }, ""},
		{"before not_before", func(_ *Grant, r *Request) { r.Now = t0.Add(-time.Second) }, "grant g-1: not valid before 2026-11-22T12:00:00Z"},
		{"at not_after", func(_ *Grant, r *Request) { r.Now = t0.Add(time.Hour) }, "grant g-1: expired at 2026-11-22T13:00:00Z"},
		{"revoked", func(g *Grant, _ *Request) { g.RevokedAt = &revoked }, "grant g-1: revoked"},
		{"one of two approvals", func(g *Grant, _ *Request) { g.Approvals = g.Approvals[:1] }, "grant g-1: approved by 1 of 2 required approvers"},
		{"the requester's own approval does not count", func(g *Grant, _ *Request) { g.Approvals[1].By = "alice" }, "approved by 1 of 2"},
		{"wrong purpose", func(_ *Grant, r *Request) { r.Purpose = "HOPERAT" }, "grant g-1: purpose HOPERAT not granted"},
		{"wrong class", func(_ *Grant, r *Request) { r.Class = "mrn" }, "grant g-1: class mrn not granted"},
		{"other principal", func(_ *Grant, r *Request) { r.Caller = "spiffe://h/nurse/x" }, "no grant for the caller"},
		{"other subject", func(_ *Grant, r *Request) { r.SubjectID = 8 }, "no grant for the caller"},
		{"token without subject", func(_ *Grant, r *Request) { r.SubjectID = 0 }, "no active grant"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := base()
			r := Request{Caller: "spiffe://h/doc/bob", Class: "ssn", Purpose: "TREAT", SubjectID: 7, Now: t0.Add(time.Minute)}
			c.mutate(&g, &r)
			id, err := Check([]Grant{g}, r)
			if c.reason == "" {
				require.NoError(t, err)
				assert.Equal(t, "g-1", id)
				return
			}
			require.Error(t, err)
			assert.Equal(t, errs.PermissionDenied, errs.KindOf(err))
			assert.Contains(t, err.Error(), c.reason)
			assert.Empty(t, id)
		})
	}
}

func TestCheckPicksAnActiveGrant(t *testing.T) {
	expired, ok := base(), base()
	expired.ID, expired.NotAfter = "g-old", t0.Add(time.Second)
	ok.ID = "g-ok"
	id, err := Check([]Grant{expired, ok}, Request{Caller: "spiffe://h/doc/bob", Class: "ssn", Purpose: "TREAT", SubjectID: 7, Now: t0.Add(time.Minute)})
	require.NoError(t, err)
	assert.Equal(t, "g-ok", id)
}

func TestValidate(t *testing.T) {
	l := Limits{MaxDuration: 24 * time.Hour, MaxApprovals: 5}
	known := func(c string) bool { return c == "ssn" }
	cases := map[string]struct {
		mutate func(g *Grant)
		want   string
	}{
		"ok":                 {func(*Grant) {}, ""},
		"no principal":       {func(g *Grant) { g.Principal = "" }, "principal: required"},
		"no classes":         {func(g *Grant) { g.Classes = nil }, "classes: at least one"},
		"unknown class":      {func(g *Grant) { g.Classes = []string{"nope"} }, "classes[0]: not a configured class"},
		"no purposes":        {func(g *Grant) { g.Purposes = nil }, "purposes: at least one"},
		"after before":       {func(g *Grant) { g.NotAfter = g.NotBefore.Add(-time.Minute) }, "not_after: must be after not_before"},
		"too long":           {func(g *Grant) { g.NotAfter = g.NotBefore.Add(25 * time.Hour) }, "longer than the configured maximum of 24h0m0s"},
		"too many approvers": {func(g *Grant) { g.RequiredApprovals = 6 }, "required_approvals: between 0 and 5"},
		"long justification": {func(g *Grant) { g.Justification = strings.Repeat("x", 1025) }, "justification: at most 1024 bytes"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := base()
			c.mutate(&g)
			err := Validate(g, l, known)
			if c.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, errs.InvalidArgument, errs.KindOf(err))
			assert.Contains(t, err.Error(), c.want)
		})
	}
}
