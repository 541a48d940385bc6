package policy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
)

const grantDecidePolicy = `
principals:
  - id: spiffe://example.org/telehealth/*
    classes:
      ssn: [detokenize_granted]
      mrn: [detokenize]
    purposes: [TREAT]
    break_glass: true
  - id: spiffe://example.org/privacy
    operations: [subject_forget, grant_create, grant_approve, grant_revoke]
  - id: spiffe://example.org/clerk
    classes:
      ssn: [tokenize]
    purposes: [TREAT]
`

func TestDecideGrantEffects(t *testing.T) {
	p := loadPolicy(t, grantDecidePolicy)
	tele := p.Find("spiffe://example.org/telehealth/dr-lee")
	require.NotNil(t, tele)
	d := policy.Decide(policy.Request{Principal: tele, Caller: "dr-lee", Operation: policy.OpDetokenize,
		Classes: []string{"ssn", "mrn", "email"}, Known: known, Purpose: "TREAT"})
	require.NoError(t, d.Err)
	assert.Equal(t, []policy.Effect{policy.Grant, policy.Allow, policy.Deny}, []policy.Effect{d.Items[0].Effect, d.Items[1].Effect, d.Items[2].Effect})
	assert.Equal(t, []int{0, 1}, d.Allowed(), "an item that may pass under a grant goes on to the engine")

	only := loadPolicy(t, `
principals:
  - id: grant-only
    classes:
      ssn: [detokenize_granted]
    purposes: [TREAT]
`).Find("grant-only")
	d = policy.Decide(policy.Request{Principal: only, Caller: "grant-only", Operation: policy.OpDetokenize, Classes: []string{"ssn"}, Known: known, Purpose: "TREAT"})
	require.NoError(t, d.Err, "a principal whose only reveal right is detokenize_granted is not refused outright")
	assert.Equal(t, policy.Grant, d.Items[0].Effect)
	d = policy.Decide(policy.Request{Principal: only, Caller: "grant-only", Operation: policy.OpTokenize, Classes: []string{"ssn"}, Known: known})
	assert.Equal(t, errs.PermissionDenied, errs.KindOf(d.Err), "detokenize_granted grants no other operation")
}

func TestDecideSubjectAndGrantOperations(t *testing.T) {
	p := loadPolicy(t, grantDecidePolicy)
	privacy, clerk, tele := p.Find("spiffe://example.org/privacy"), p.Find("spiffe://example.org/clerk"), p.Find("spiffe://example.org/telehealth/x")
	for _, op := range []string{policy.OpSubjectForget, policy.OpGrantCreate, policy.OpGrantApprove, policy.OpGrantRevoke} {
		assert.NoError(t, policy.Decide(policy.Request{Principal: privacy, Operation: op}).Err, op)
		err := policy.Decide(policy.Request{Principal: clerk, Caller: "clerk", Operation: op}).Err
		assert.Equal(t, errs.PermissionDenied, errs.KindOf(err), op)
	}
	bg := func(pr *policy.Principal, justification string) error {
		return policy.Decide(policy.Request{Principal: pr, Caller: "c", Operation: policy.OpGrantBreakGlass, Justification: justification}).Err
	}
	assert.NoError(t, bg(tele, "unconscious, ED"))
	assert.Equal(t, errs.InvalidArgument, errs.KindOf(bg(tele, "  ")), "a justification is required")
	assert.Equal(t, errs.PermissionDenied, errs.KindOf(bg(clerk, "why not")), "break_glass: true is required")
	assert.Equal(t, errs.PermissionDenied, errs.KindOf(bg(privacy, "why not")), "grant_create is not break_glass")
}
