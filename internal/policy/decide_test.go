package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
)

// testClasses are the configured classes the policies below are validated against.
var testClasses = []string{"ssn", "mrn", "email", "phone"}

// decidePolicy grants distinct rights to a handful of identities and patterns.
const decidePolicy = `
principals:
  - id: spiffe://example.org/clerk
    classes:
      ssn: [tokenize]
      mrn: [tokenize, detokenize, delete]
      email: [detokenize_masked]
    purposes: [TREAT, HPAYMT]
  - id: spiffe://example.org/doctor
    classes:
      "*": [tokenize, detokenize]
      phone: [detokenize_masked]
    purposes: [TREAT]
    break_glass: true
  - id: spiffe://example.org/auditor
    operations: [audit_export, audit_verify, disclosures]
  - id: spiffe://example.org/keyadmin
    operations: [keys_rotate]
  - id: spiffe://example.org/batch/*
    classes:
      email: [tokenize]
  - id: spiffe://example.org/*
    classes:
      phone: [tokenize]
  - id: spiffe://example.org/batch/special
    classes:
      ssn: [delete]
`

func writePolicy(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func loadPolicy(t *testing.T, body string) *policy.Policy {
	t.Helper()
	p, err := policy.Load(writePolicy(t, body), testClasses)
	require.NoError(t, err)
	return p
}

func known(c string) bool {
	for _, k := range testClasses {
		if k == c {
			return true
		}
	}
	return false
}

// effects is a compact rendering of a decision's items: A (allow), M (mask), D (deny).
func effects(d policy.Decision) string {
	var b strings.Builder
	for _, it := range d.Items {
		b.WriteByte("DMA"[it.Effect])
	}
	return b.String()
}

func TestDecide(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, decidePolicy)
	tests := []struct {
		name          string
		caller        string
		op            string
		classes       []string
		purpose       string
		justification string
		wantKind      errs.Kind // checked when wantErr is set
		wantErr       string    // substring of the whole-request error
		wantEffects   string
		wantAllowed   []int
		wantDenied    []string
		wantGlass     bool
	}{
		{name: "tokenize per class", caller: "spiffe://example.org/clerk", op: policy.OpTokenize,
			classes: []string{"ssn", "mrn", "email"}, wantEffects: "AAD", wantAllowed: []int{0, 1},
			wantDenied: []string{"class email: tokenize"}},
		{name: "delete per class", caller: "spiffe://example.org/clerk", op: policy.OpDelete,
			classes: []string{"mrn", "ssn"}, wantEffects: "AD", wantAllowed: []int{0},
			wantDenied: []string{"class ssn: delete"}},
		{name: "star class grants every class", caller: "spiffe://example.org/doctor", op: policy.OpTokenize,
			classes: []string{"ssn", "mrn", "email"}, wantEffects: "AAA", wantAllowed: []int{0, 1, 2}},
		{name: "named class overrides star", caller: "spiffe://example.org/doctor", op: policy.OpTokenize,
			classes: []string{"phone", "ssn"}, wantEffects: "DA", wantAllowed: []int{1},
			wantDenied: []string{"class phone: tokenize"}},
		{name: "star class does not grant unlisted operation", caller: "spiffe://example.org/doctor", op: policy.OpDelete,
			classes: []string{"ssn"}, wantKind: errs.PermissionDenied,
			wantErr: "caller spiffe://example.org/doctor may not delete tokens in any class"},
		{name: "unknown class passes", caller: "spiffe://example.org/clerk", op: policy.OpTokenize,
			classes: []string{"no-such-class", "email"}, wantEffects: "AD", wantAllowed: []int{0},
			wantDenied: []string{"class email: tokenize"}},
		{name: "pattern grants", caller: "spiffe://example.org/batch/nightly", op: policy.OpTokenize,
			classes: []string{"email", "phone"}, wantEffects: "AD", wantAllowed: []int{0},
			wantDenied: []string{"class phone: tokenize"}},
		{name: "second pattern when the first does not match", caller: "spiffe://example.org/other", op: policy.OpTokenize,
			classes: []string{"phone", "email"}, wantEffects: "AD", wantAllowed: []int{0},
			wantDenied: []string{"class email: tokenize"}},
		{name: "exact beats pattern", caller: "spiffe://example.org/batch/special", op: policy.OpTokenize,
			classes: []string{"email"}, wantKind: errs.PermissionDenied,
			wantErr: "caller spiffe://example.org/batch/special may not tokenize in any class"},
		{name: "unknown principal tokenize", caller: "spiffe://elsewhere/x", op: policy.OpTokenize,
			classes: []string{"ssn"}, wantKind: errs.PermissionDenied,
			wantErr: "caller spiffe://elsewhere/x may not tokenize in any class"},
		{name: "unknown principal delete", caller: "spiffe://elsewhere/x", op: policy.OpDelete,
			classes: []string{"ssn"}, wantKind: errs.PermissionDenied,
			wantErr: "caller spiffe://elsewhere/x may not delete tokens in any class"},
		{name: "unknown principal detokenize", caller: "spiffe://elsewhere/x", op: policy.OpDetokenize,
			classes: []string{"ssn"}, purpose: "TREAT", wantKind: errs.PermissionDenied,
			wantErr: "caller spiffe://elsewhere/x may not invoke purpose of use TREAT"},
		{name: "unknown principal request op", caller: "spiffe://elsewhere/x", op: policy.OpAuditExport,
			wantKind: errs.PermissionDenied, wantErr: "caller spiffe://elsewhere/x may not audit_export"},
		{name: "detokenize without purpose", caller: "spiffe://example.org/clerk", op: policy.OpDetokenize,
			classes: []string{"mrn"}, wantKind: errs.InvalidArgument, wantErr: "purpose_of_use: required"},
		{name: "detokenize with unknown purpose", caller: "spiffe://example.org/clerk", op: policy.OpDetokenize,
			classes: []string{"mrn"}, purpose: "LUNCH", wantKind: errs.InvalidArgument,
			wantErr: "purpose_of_use: not a known HL7 v3 PurposeOfUse code"},
		{name: "detokenize with purpose not granted", caller: "spiffe://example.org/clerk", op: policy.OpDetokenize,
			classes: []string{"mrn"}, purpose: "HRESCH", wantKind: errs.PermissionDenied,
			wantErr: "caller spiffe://example.org/clerk may not invoke purpose of use HRESCH"},
		{name: "detokenize granted purpose", caller: "spiffe://example.org/clerk", op: policy.OpDetokenize,
			classes: []string{"mrn"}, purpose: "HPAYMT", wantEffects: "A", wantAllowed: []int{0}},
		{name: "break-glass without grant", caller: "spiffe://example.org/clerk", op: policy.OpDetokenize,
			classes: []string{"mrn"}, purpose: "ETREAT", justification: "patient unconscious",
			wantKind: errs.PermissionDenied, wantErr: "caller spiffe://example.org/clerk may not break the glass (ETREAT)"},
		{name: "break-glass with empty justification", caller: "spiffe://example.org/doctor", op: policy.OpDetokenize,
			classes: []string{"mrn"}, purpose: "ETREAT", wantKind: errs.InvalidArgument,
			wantErr: "justification: required for break-glass"},
		{name: "break-glass with whitespace justification", caller: "spiffe://example.org/doctor", op: policy.OpDetokenize,
			classes: []string{"mrn"}, purpose: "ETREAT", justification: " \t\n ", wantKind: errs.InvalidArgument,
			wantErr: "justification: required for break-glass"},
		{name: "break-glass with justification", caller: "spiffe://example.org/doctor", op: policy.OpDetokenize,
			classes: []string{"mrn", "ssn"}, purpose: "ETREAT", justification: "patient unconscious in ER",
			wantEffects: "AA", wantAllowed: []int{0, 1}, wantGlass: true},
		{name: "justification too long", caller: "spiffe://example.org/doctor", op: policy.OpDetokenize,
			classes: []string{"mrn"}, purpose: "TREAT", justification: strings.Repeat("x", policy.MaxJustificationBytes+1),
			wantKind: errs.InvalidArgument, wantErr: "justification: at most 1024 bytes of UTF-8"},
		{name: "justification at the limit", caller: "spiffe://example.org/doctor", op: policy.OpDetokenize,
			classes: []string{"mrn"}, purpose: "TREAT", justification: strings.Repeat("x", policy.MaxJustificationBytes),
			wantEffects: "A", wantAllowed: []int{0}},
		{name: "justification invalid UTF-8", caller: "spiffe://example.org/doctor", op: policy.OpDetokenize,
			classes: []string{"mrn"}, purpose: "TREAT", justification: "bad \xff\xfe bytes",
			wantKind: errs.InvalidArgument, wantErr: "justification: at most 1024 bytes of UTF-8"},
		{name: "masked fallback mixed with allowed and denied", caller: "spiffe://example.org/clerk", op: policy.OpDetokenize,
			classes: []string{"mrn", "email", "ssn", "nope"}, purpose: "TREAT", wantEffects: "AMDA",
			wantAllowed: []int{0, 1, 3}, wantDenied: []string{"class ssn: detokenize"}},
		{name: "masked overrides star for a named class", caller: "spiffe://example.org/doctor", op: policy.OpDetokenize,
			classes: []string{"phone", "ssn"}, purpose: "TREAT", wantEffects: "MA", wantAllowed: []int{0, 1}},
		{name: "masked only caller still passes", caller: "spiffe://example.org/clerk", op: policy.OpDetokenize,
			classes: []string{"email"}, purpose: "TREAT", wantEffects: "M", wantAllowed: []int{0}},
		{name: "no reveal right at all", caller: "spiffe://example.org/batch/nightly", op: policy.OpDetokenize,
			classes: []string{"email"}, purpose: "TREAT", wantKind: errs.PermissionDenied,
			wantErr: "may not invoke purpose of use TREAT"},
		{name: "audit_export granted", caller: "spiffe://example.org/auditor", op: policy.OpAuditExport},
		{name: "audit_verify granted", caller: "spiffe://example.org/auditor", op: policy.OpAuditVerify},
		{name: "disclosures granted", caller: "spiffe://example.org/auditor", op: policy.OpDisclosures},
		{name: "keys_rotate not granted to auditor", caller: "spiffe://example.org/auditor", op: policy.OpKeysRotate,
			wantKind: errs.PermissionDenied, wantErr: "caller spiffe://example.org/auditor may not keys_rotate"},
		{name: "keys_rotate granted", caller: "spiffe://example.org/keyadmin", op: policy.OpKeysRotate},
		{name: "audit_export not granted to key admin", caller: "spiffe://example.org/keyadmin", op: policy.OpAuditExport,
			wantKind: errs.PermissionDenied, wantErr: "may not audit_export"},
		{name: "class rights do not grant request ops", caller: "spiffe://example.org/doctor", op: policy.OpDisclosures,
			wantKind: errs.PermissionDenied, wantErr: "may not disclosures"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := policy.Decide(policy.Request{
				Principal: p.Find(tc.caller), Caller: tc.caller, Operation: tc.op, Classes: tc.classes,
				Known: known, Purpose: tc.purpose, Justification: tc.justification,
			})
			if tc.wantErr != "" {
				require.Error(t, d.Err)
				assert.Equal(t, tc.wantKind, errs.KindOf(d.Err))
				assert.Contains(t, d.Err.Error(), tc.wantErr)
				assert.Empty(t, d.Items)
				assert.Empty(t, d.Allowed())
				assert.False(t, d.BreakGlass)
				return
			}
			require.NoError(t, d.Err)
			assert.Equal(t, tc.wantEffects, effects(d))
			assert.Equal(t, tc.wantAllowed, d.Allowed())
			assert.Equal(t, tc.wantDenied, d.Denied)
			assert.Equal(t, tc.wantGlass, d.BreakGlass)
			for i, it := range d.Items {
				if it.Effect == policy.Deny {
					require.Error(t, it.Err, "item %d", i)
					assert.Equal(t, errs.PermissionDenied, errs.KindOf(it.Err))
					assert.Contains(t, it.Err.Error(), "class "+tc.classes[i]+": caller may not "+tc.op)
				} else {
					assert.NoError(t, it.Err, "item %d", i)
				}
			}
		})
	}
}

func TestDecideWithoutKnownRefusesUnknownClasses(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, decidePolicy)
	d := policy.Decide(policy.Request{
		Principal: p.Find("spiffe://example.org/clerk"), Caller: "c", Operation: policy.OpTokenize,
		Classes: []string{"ssn", "other"},
	})
	require.NoError(t, d.Err)
	assert.Equal(t, "AD", effects(d))
	assert.Equal(t, []string{"class other: tokenize"}, d.Denied)
}

func TestDecideDevPolicy(t *testing.T) {
	t.Parallel()
	p := policy.Dev()
	pr := p.Find(policy.DevIdentity)
	require.NotNil(t, pr)
	assert.Nil(t, p.Find("someone-else"))
	tests := []struct {
		name      string
		req       policy.Request
		wantErr   bool
		wantGlass bool
	}{
		{name: "tokenize", req: policy.Request{Operation: policy.OpTokenize, Classes: []string{"a", "b"}}},
		{name: "delete", req: policy.Request{Operation: policy.OpDelete, Classes: []string{"a"}}},
		{name: "detokenize every purpose", req: policy.Request{Operation: policy.OpDetokenize, Classes: []string{"a"}, Purpose: "SYSDEV"}},
		{name: "break-glass", req: policy.Request{Operation: policy.OpDetokenize, Classes: []string{"a"}, Purpose: "ETREAT", Justification: "drill"}, wantGlass: true},
		{name: "keys_rotate", req: policy.Request{Operation: policy.OpKeysRotate}},
		{name: "unknown operation", req: policy.Request{Operation: "format_disk"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.req.Principal, tc.req.Caller = pr, policy.DevIdentity
			d := policy.Decide(tc.req)
			if tc.wantErr {
				require.Error(t, d.Err)
				assert.Equal(t, errs.PermissionDenied, errs.KindOf(d.Err))
				return
			}
			require.NoError(t, d.Err)
			assert.Len(t, d.Allowed(), len(tc.req.Classes))
			assert.Equal(t, tc.wantGlass, d.BreakGlass)
		})
	}
}

func TestPrincipalHelpers(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, decidePolicy)
	var none *policy.Principal
	assert.False(t, none.Can("ssn", policy.OpTokenize))
	assert.False(t, none.CanAny(policy.OpTokenize))
	assert.False(t, none.Allowed(policy.OpAuditExport))
	assert.False(t, none.MayPurpose("TREAT"))

	clerk := p.Find("spiffe://example.org/clerk")
	require.NotNil(t, clerk)
	assert.True(t, clerk.Can("mrn", policy.OpDetokenize))
	assert.False(t, clerk.Can("ssn", policy.OpDetokenize))
	assert.True(t, clerk.CanAny(policy.OpDetokenizeMasked))
	assert.False(t, clerk.MayPurpose("ETREAT"))
	doctor := p.Find("spiffe://example.org/doctor")
	require.NotNil(t, doctor)
	assert.True(t, doctor.MayPurpose("ETREAT"))
	assert.Equal(t, "spiffe://example.org/batch/*", p.Find("spiffe://example.org/batch/x").ID)
	assert.Equal(t, "spiffe://example.org/*", p.Find("spiffe://example.org/a/b").ID, "* spans slashes")
	assert.Nil(t, p.Find("spiffe://example.org"), "the pattern needs its literal prefix")
	assert.Nil(t, p.Find("xspiffe://example.org/clerk"), "patterns are anchored")
}
