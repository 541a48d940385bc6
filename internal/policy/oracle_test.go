package policy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
)

// Issue 10, finding 1: tokenize with a masked reveal on a static class is a full
// reveal (mask shows the last four digits, tokenize the 10^5 candidates), so the
// policy refuses the combination unless it is acknowledged.
func TestOracleCombinationRefusedAtLoad(t *testing.T) {
	t.Parallel()
	static := policy.WithStaticClasses([]string{"ssn", "mrn"})
	tests := []struct {
		name, body, want string
	}{
		{"tokenize and masked on a static class",
			"principals:\n  - id: analyst\n    classes: {ssn: [tokenize, detokenize_masked]}\n", "static class [ssn]"},
		{"through the wildcard",
			"principals:\n  - id: a\n    classes: {\"*\": [tokenize], mrn: [tokenize, detokenize_masked]}\n", "static class [mrn]"},
		{"wildcard grants both",
			"principals:\n  - id: a\n    classes: {\"*\": [tokenize, detokenize_masked]}\n", "static class [mrn ssn]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Load(writePolicy(t, tc.body), testClasses, static)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "acknowledge_oracle")
		})
	}
	for _, body := range []string{
		// Acknowledged: the principal is trusted to recover values.
		"principals:\n  - id: analyst\n    acknowledge_oracle: true\n    classes: {ssn: [tokenize, detokenize_masked]}\n",
		// A dynamic class gives a new token per call: no oracle.
		"principals:\n  - id: a\n    classes: {email: [tokenize, detokenize_masked]}\n",
		// Full reveal: nothing more to learn.
		"principals:\n  - id: a\n    classes: {ssn: [tokenize, detokenize, detokenize_masked]}\n",
		// Masked only.
		"principals:\n  - id: a\n    classes: {ssn: [detokenize_masked]}\n",
	} {
		_, err := policy.Load(writePolicy(t, body), testClasses, static)
		assert.NoError(t, err, body)
	}
}

// Issue 10, finding 1: a tokenize quota of new values per minute, an enumeration
// anomaly, and detokenize misses that count toward the reveal window and raise a
// harvest anomaly.
func TestTokenizeQuotaAndAnomalyWindows(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, `principals:
  - id: batch
    classes: {ssn: [tokenize, detokenize]}
    purposes: [TREAT]
    rate_limit: {new_values_per_minute: 10, enumeration_per_minute: 4, reveals_per_minute: 100, misses_per_minute: 5}
`)
	pr := p.Find("batch")
	require.NotNil(t, pr)
	now := time.Now()
	assert.True(t, p.TokenizeQuota(pr, now))
	crossed, n := p.Created(pr, 4, now)
	assert.False(t, crossed, "at the threshold, not above")
	assert.Equal(t, 4, n)
	crossed, _ = p.Created(pr, 1, now)
	assert.True(t, crossed, "above the enumeration threshold: an anomaly, once")
	crossed, _ = p.Created(pr, 5, now)
	assert.False(t, crossed, "once per window")
	assert.False(t, p.TokenizeQuota(pr, now), "10 new values used up the quota")
	d := policy.Decide(policy.Request{Principal: pr, Caller: "batch", Operation: policy.OpTokenize, Classes: []string{"ssn"}, OverQuota: true})
	require.Error(t, d.Err)
	assert.Equal(t, errs.ResourceExhausted, errs.KindOf(d.Err))
	assert.True(t, p.TokenizeQuota(pr, now.Add(61*time.Second)), "the next minute has a fresh quota")

	crossed, _ = p.Missed(pr, 5, now)
	assert.False(t, crossed)
	crossed, n = p.Missed(pr, 1, now)
	assert.True(t, crossed, "six misses: above the harvest threshold")
	assert.Equal(t, 6, n)
}

// Issue 10, finding 7: a break-glass justification of white space only is refused.
func TestBreakGlassNeedsARealJustification(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, "principals:\n  - id: er\n    classes: {ssn: [detokenize]}\n    break_glass: true\n")
	for _, j := range []string{"", " ", "\t\n  \r", "\u00a0\u2003"} {
		d := policy.Decide(policy.Request{Principal: p.Find("er"), Caller: "er", Operation: policy.OpDetokenize,
			Classes: []string{"ssn"}, Purpose: policy.BreakGlass, Justification: j})
		require.Error(t, d.Err, "%q", j)
		assert.Equal(t, errs.InvalidArgument, errs.KindOf(d.Err))
		assert.Contains(t, d.Err.Error(), "justification: required for break-glass")
	}
	d := policy.Decide(policy.Request{Principal: p.Find("er"), Caller: "er", Operation: policy.OpDetokenize,
		Classes: []string{"ssn"}, Purpose: policy.BreakGlass, Justification: "patient unconscious"})
	require.NoError(t, d.Err)
	assert.True(t, d.BreakGlass)
}
