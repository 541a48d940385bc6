package api

import (
	"context"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/grant"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// grantService converts tokenizer.v1 GrantService messages to grant operations.
type grantService struct {
	tokenizerv1.UnimplementedGrantServiceServer
	h *Handlers
}

// runGrantOp authorizes op once (policy.Decide through RunBatch), records the
// justification, and runs fn.
func (x *grantService) runGrantOp(ctx context.Context, op, justification string, fn func(ctx context.Context, eng *tokenizer.Engine) (grant.Grant, error)) (*tokenizerv1.Grant, error) {
	results, _, err := app.RunBatch(ctx, x.h.App, []struct{}{{}}, app.Batch[struct{}, grant.Grant]{
		Op: op, Justification: justification,
		Run: func(ctx context.Context, eng *tokenizer.Engine, _ []struct{}) ([]grant.Grant, error) {
			g, err := fn(ctx, eng)
			return []grant.Grant{g}, err
		},
		Fail: func(error) grant.Grant { return grant.Grant{} },
	})
	if err != nil {
		return nil, err
	}
	audit.RecordFrom(ctx).Grants = []string{results[0].ID}
	return grantProto(results[0], time.Now()), nil
}

func (x *grantService) CreateGrant(ctx context.Context, req *tokenizerv1.CreateGrantRequest) (*tokenizerv1.Grant, error) {
	op := policy.OpGrantCreate
	if req.GetBreakGlass() {
		op = policy.OpGrantBreakGlass
	}
	return x.runGrantOp(ctx, op, req.GetJustification(), func(ctx context.Context, eng *tokenizer.Engine) (grant.Grant, error) {
		subj, err := eng.SubjectInfo(ctx, req.GetSubject())
		if err != nil {
			return grant.Grant{}, err
		}
		g := grant.Grant{
			SubjectID: subj.ID, Principal: req.GetPrincipal(), Classes: req.GetClasses(), Purposes: req.GetPurposes(),
			RequiredApprovals: int(req.GetRequiredApprovals()), Justification: req.GetJustification(), BreakGlass: req.GetBreakGlass(),
		}
		if req.GetNotBefore() != nil {
			g.NotBefore = req.GetNotBefore().AsTime()
		}
		if req.GetNotAfter() != nil {
			g.NotAfter = req.GetNotAfter().AsTime()
		}
		rec := audit.RecordFrom(ctx)
		rec.SubjectDigests = [][]byte{subj.AuditDigest}
		for _, c := range g.Classes {
			rec.Classes = append(rec.Classes, x.h.App.ClassLabel(c))
		}
		if g, err = x.h.App.NewGrant(g, callerID(ctx), time.Now()); err != nil {
			return grant.Grant{}, err
		}
		if err := x.h.App.Store.InsertGrant(ctx, g); err != nil {
			return grant.Grant{}, errs.Wrap(errs.Unavailable, err, "grants unavailable")
		}
		return x.h.App.Store.Grant(ctx, g.ID)
	})
}

func (x *grantService) ApproveGrant(ctx context.Context, req *tokenizerv1.ApproveGrantRequest) (*tokenizerv1.Grant, error) {
	return x.runGrantOp(ctx, policy.OpGrantApprove, "", func(ctx context.Context, _ *tokenizer.Engine) (grant.Grant, error) {
		g, err := x.h.App.Store.Grant(ctx, req.GetId())
		if err != nil {
			return g, err
		}
		caller, now := callerID(ctx), time.Now()
		switch {
		case g.Requester == caller:
			return g, errs.New(errs.PermissionDenied, "grant %s: the requester cannot approve their own grant", g.ID)
		case g.RevokedAt != nil:
			return g, errs.New(errs.FailedPrecondition, "grant %s: revoked", g.ID)
		case !now.Before(g.NotAfter):
			return g, errs.New(errs.FailedPrecondition, "grant %s: expired", g.ID)
		}
		ok, err := x.h.App.Store.ApproveGrant(ctx, g.ID, caller, now)
		if err != nil {
			return g, errs.Wrap(errs.Unavailable, err, "grants unavailable")
		}
		if !ok {
			return g, errs.New(errs.FailedPrecondition, "grant %s: already approved by the caller", g.ID)
		}
		return x.h.App.Store.Grant(ctx, g.ID)
	})
}

func (x *grantService) RevokeGrant(ctx context.Context, req *tokenizerv1.RevokeGrantRequest) (*tokenizerv1.Grant, error) {
	return x.runGrantOp(ctx, policy.OpGrantRevoke, "", func(ctx context.Context, _ *tokenizer.Engine) (grant.Grant, error) {
		g, err := x.h.App.Store.Grant(ctx, req.GetId())
		if err != nil {
			return g, err
		}
		ok, err := x.h.App.Store.RevokeGrant(ctx, g.ID, callerID(ctx), time.Now())
		if err != nil {
			return g, errs.Wrap(errs.Unavailable, err, "grants unavailable")
		}
		if !ok {
			return g, errs.New(errs.FailedPrecondition, "grant %s: already revoked", g.ID)
		}
		return x.h.App.Store.Grant(ctx, g.ID)
	})
}

func (x *grantService) ListGrants(ctx context.Context, req *tokenizerv1.ListGrantsRequest) (*tokenizerv1.ListGrantsResponse, error) {
	rec := audit.RecordFrom(ctx)
	rec.Items = 1
	var err error
	for _, op := range []string{policy.OpGrantCreate, policy.OpGrantApprove, policy.OpGrantRevoke} {
		if err = requireOp(ctx, op); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errs.New(errs.PermissionDenied, "caller %s may not list grants (needs grant_create, grant_approve or grant_revoke)", callerID(ctx))
	}
	var f grant.Filter
	switch {
	case req.GetSubject() != "":
		eng, err := x.h.App.Engine()
		if err != nil {
			return nil, err
		}
		subj, err := eng.SubjectInfo(ctx, req.GetSubject())
		if err != nil {
			return nil, err
		}
		f.SubjectID, rec.SubjectDigests = subj.ID, [][]byte{subj.AuditDigest}
	case req.GetUnreviewedBreakGlass():
		f.UnreviewedBreakGlass = true
	default:
		return nil, errs.New(errs.InvalidArgument, "subject or unreviewed_break_glass: one is required")
	}
	gs, err := x.h.App.Store.ListGrants(ctx, f)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "grants unavailable")
	}
	resp := &tokenizerv1.ListGrantsResponse{}
	now := time.Now()
	for _, g := range gs {
		resp.Grants = append(resp.Grants, grantProto(g, now))
	}
	return resp, nil
}

// grantProto converts a grant, with its status at now.
func grantProto(g grant.Grant, now time.Time) *tokenizerv1.Grant {
	out := &tokenizerv1.Grant{
		Id: g.ID, Principal: g.Principal, Classes: g.Classes, Purposes: g.Purposes,
		NotBefore: timestamppb.New(g.NotBefore), NotAfter: timestamppb.New(g.NotAfter),
		RequiredApprovals: int32(g.RequiredApprovals), Requester: g.Requester, Justification: g.Justification,
		BreakGlass: g.BreakGlass, Deny: g.Deny, Status: g.Active(now), CreateTime: timestamppb.New(g.CreatedAt),
	}
	if out.Status == "" {
		out.Status = "active"
	}
	for _, a := range g.Approvals {
		out.Approvers = append(out.Approvers, a.By)
	}
	if g.RevokedAt != nil {
		out.RevokeTime = timestamppb.New(*g.RevokedAt)
	}
	if g.ReviewedAt != nil {
		out.ReviewTime = timestamppb.New(*g.ReviewedAt)
	}
	return out
}

func (x *grantService) ImportConsent(ctx context.Context, req *tokenizerv1.ImportConsentRequest) (*tokenizerv1.ImportConsentResponse, error) {
	var created []grant.Grant
	var consentID string
	_, err := x.runGrantOp(ctx, policy.OpGrantCreate, "", func(ctx context.Context, eng *tokenizer.Engine) (grant.Grant, error) {
		raw, err := protojson.Marshal(req.GetConsent())
		if err != nil || req.GetConsent() == nil {
			return grant.Grant{}, errs.New(errs.InvalidArgument, "consent: required (a FHIR R4 Consent resource)")
		}
		now := time.Now()
		c, err := grant.ParseConsent(raw, grant.ConsentOptions{Now: now, Labels: x.h.App.Config.Grants.SecurityLabels,
			ValidPurpose: func(p string) bool { _, ok := policy.PurposesOfUse[p]; return ok }})
		if err != nil {
			return grant.Grant{}, err
		}
		consentID = c.ID
		subj, err := eng.SubjectInfo(ctx, c.Subject)
		if err != nil {
			return grant.Grant{}, err
		}
		rec := audit.RecordFrom(ctx)
		rec.SubjectDigests = [][]byte{subj.AuditDigest}
		if created, err = x.consentGrants(c, subj.ID, callerID(ctx)); err != nil {
			return grant.Grant{}, err
		}
		rec.Justification = "Consent/" + c.ID // bounded: every grant's justification passed Validate
		for _, g := range created {
			if err := x.h.App.Store.InsertGrant(ctx, g); err != nil {
				return grant.Grant{}, errs.Wrap(errs.Unavailable, err, "grants unavailable")
			}
		}
		return grant.Grant{}, nil
	})
	if err != nil {
		return nil, err
	}
	rec := audit.RecordFrom(ctx)
	rec.Grants = nil
	resp := &tokenizerv1.ImportConsentResponse{ConsentId: consentID}
	now := time.Now()
	for _, g := range created {
		rec.Grants = append(rec.Grants, g.ID)
		resp.Grants = append(resp.Grants, grantProto(g, now))
	}
	return resp, nil
}

// consentGrants completes and validates every grant of c before any is stored, so that
// a Consent with one bad provision stores nothing.
func (x *grantService) consentGrants(c grant.Consent, subjectID int64, caller string) ([]grant.Grant, error) {
	out := make([]grant.Grant, len(c.Grants))
	for i, g := range c.Grants {
		g.ID, g.SubjectID, g.Requester = grant.NewID(), subjectID, caller
		if err := grant.Validate(g, x.h.App.GrantLimits(), x.h.App.IsClass); err != nil {
			path := strings.TrimPrefix(g.Justification, "Consent/"+c.ID+" ")
			return nil, errs.New(errs.InvalidArgument, "Consent.%s: %s", path, err.Error())
		}
		out[i] = g
	}
	return out, nil
}
