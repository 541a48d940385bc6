package policy_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
)

func TestLoadErrorsNameThePlace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want string
	}{
		{name: "no principals", body: "principals: []\n", want: "principals: at least one is required"},
		{name: "empty file", body: "# nothing\n", want: "principals: at least one is required"},
		{name: "missing id", body: "principals:\n  - id: a\n  - classes: {ssn: [tokenize]}\n", want: "principals[1].id: required"},
		{name: "unknown class", body: "principals:\n  - id: a\n    classes: {blood_type: [tokenize]}\n",
			want: `principals[0].classes: "blood_type" is not a configured class`},
		{name: "unknown class operation", body: "principals:\n  - id: a\n    classes: {ssn: [tokenize, reveal]}\n",
			want: `principals[0].classes.ssn: operation "reveal": want one of tokenize, detokenize, detokenize_masked, delete`},
		{name: "request op as class op", body: "principals:\n  - id: a\n    classes: {\"*\": [audit_export]}\n",
			want: `principals[0].classes.*: operation "audit_export"`},
		{name: "unknown request operation", body: "principals:\n  - id: a\n  - id: b\n    operations: [tokenize]\n",
			want: `principals[1].operations: "tokenize": want one of audit_export, audit_verify, disclosures, keys_rotate`},
		{name: "unknown purpose", body: "principals:\n  - id: a\n    purposes: [TREAT, LUNCH]\n",
			want: `principals[0].purposes: "LUNCH" is not an HL7 v3 PurposeOfUse code`},
		{name: "ETREAT as purpose", body: "principals:\n  - id: a\n    purposes: [ETREAT]\n",
			want: "principals[0].purposes: grant ETREAT with break_glass: true, not as a purpose"},
		{name: "negative requests per second", body: "principals:\n  - id: a\n    rate_limit: {requests_per_second: -1}\n",
			want: "principals[0].rate_limit: values must not be negative"},
		{name: "negative burst", body: "principals:\n  - id: a\n    rate_limit: {burst: -2}\n",
			want: "principals[0].rate_limit: values must not be negative"},
		{name: "negative reveals per minute", body: "principals:\n  - id: a\n    rate_limit: {reveals_per_minute: -5}\n",
			want: "principals[0].rate_limit: values must not be negative"},
		{name: "duplicate id", body: "principals:\n  - id: a\n  - id: b\n  - id: a\n", want: `principals[2].id: "a" is listed twice`},
		{name: "unknown field", body: "principals:\n  - id: a\n    break_glas: true\n", want: "field break_glas not found"},
		{name: "unknown top-level field", body: "principals:\n  - id: a\nroles: []\n", want: "field roles not found"},
		{name: "not YAML", body: "principals: [\n", want: "policy file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writePolicy(t, tc.body)
			_, err := policy.Load(path, testClasses)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), path, "the error names the file")
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := policy.Load(filepath.Join(t.TempDir(), "absent.yaml"), testClasses)
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "policy file")
}

func TestLoadWithoutClassListAcceptsAnyClass(t *testing.T) {
	t.Parallel()
	p, err := policy.Load(writePolicy(t, "principals:\n  - id: a\n    classes: {anything: [tokenize]}\n"), nil)
	require.NoError(t, err)
	assert.True(t, p.Find("a").Can("anything", policy.OpTokenize))
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, `
principals:
  - id: limited
    rate_limit: {requests_per_second: 2, burst: 3}
  - id: defaulted
    rate_limit: {requests_per_second: 5}
  - id: unlimited
`)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at        time.Duration
		wantOK    bool
		wantRetry time.Duration
	}
	tests := []struct {
		name  string
		id    string
		steps []step
	}{
		{name: "burst then refill", id: "limited", steps: []step{
			{0, true, 0}, {0, true, 0}, {0, true, 0},
			{0, false, 500 * time.Millisecond},
			{250 * time.Millisecond, false, 250 * time.Millisecond},
			{500 * time.Millisecond, true, 0},
			{500 * time.Millisecond, false, 500 * time.Millisecond},
			{time.Hour, true, 0}, {time.Hour, true, 0}, {time.Hour, true, 0},
			{time.Hour, false, 500 * time.Millisecond},
		}},
		{name: "burst defaults to the rate", id: "defaulted", steps: []step{
			{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, true, 0}, {0, true, 0},
			{0, false, 200 * time.Millisecond},
		}},
		{name: "no limit", id: "unlimited", steps: []step{{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, true, 0}}},
		{name: "unknown principal is not limited here", id: "nobody", steps: []step{{0, true, 0}, {0, true, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pr := p.Find(tc.id)
			for i, s := range tc.steps {
				ok, retry := p.Allow(pr, t0.Add(s.at))
				assert.Equal(t, s.wantOK, ok, "step %d", i)
				assert.InDelta(t, float64(s.wantRetry), float64(retry), float64(time.Millisecond), "step %d", i)
			}
		})
	}
}

func TestRevealWindow(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, `
principals:
  - id: watched
    rate_limit: {reveals_per_minute: 10}
  - id: unwatched
`)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at          time.Duration
		n           int
		wantCrossed bool
		wantCount   int
	}
	tests := []struct {
		name  string
		id    string
		steps []step
	}{
		{name: "crossed once per window", id: "watched", steps: []step{
			{0, 6, false, 6},
			{10 * time.Second, 4, false, 10},
			{20 * time.Second, 1, true, 11},
			{30 * time.Second, 5, false, 16},
			{59 * time.Second, 0, false, 0},
			{time.Minute, 11, true, 11},
			{time.Minute + time.Second, 1, false, 12},
			{2 * time.Minute, 3, false, 3},
		}},
		{name: "no threshold", id: "unwatched", steps: []step{{0, 1000, false, 0}}},
		{name: "no principal", id: "nobody", steps: []step{{0, 1000, false, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pr := p.Find(tc.id)
			for i, s := range tc.steps {
				crossed, count := p.Revealed(pr, s.n, t0.Add(s.at))
				assert.Equal(t, s.wantCrossed, crossed, "step %d", i)
				assert.Equal(t, s.wantCount, count, "step %d", i)
			}
		})
	}
}

const storeV1 = "principals:\n  - id: a\n    classes: {ssn: [tokenize]}\n    rate_limit: {requests_per_second: 1, burst: 1}\n"
const storeV2 = "principals:\n  - id: a\n    classes: {ssn: [tokenize, delete]}\n    rate_limit: {requests_per_second: 1, burst: 1}\n  - id: b\n"

func TestStoreReload(t *testing.T) {
	t.Parallel()
	path := writePolicy(t, storeV1)
	s, err := policy.NewStore(path, testClasses, nil)
	require.NoError(t, err)
	require.NotNil(t, s.Current())
	assert.False(t, s.Changed())
	assert.False(t, s.Current().Find("a").Can("ssn", policy.OpDelete))

	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ok, _ := s.Current().Allow(s.Current().Find("a"), now)
	require.True(t, ok)

	require.NoError(t, os.WriteFile(path, []byte(storeV2), 0o600))
	assert.True(t, s.Changed())
	require.NoError(t, s.Reload())
	assert.False(t, s.Changed())
	assert.True(t, s.Current().Find("a").Can("ssn", policy.OpDelete))
	assert.NotNil(t, s.Current().Find("b"))
	ok, retry := s.Current().Allow(s.Current().Find("a"), now)
	assert.False(t, ok, "a reload keeps the principal's rate")
	assert.Equal(t, time.Second, retry)

	good := s.Current()
	require.NoError(t, os.WriteFile(path, []byte("principals:\n  - id: a\n    classes: {ssn: [explode]}\n"), 0o600))
	assert.True(t, s.Changed())
	err = s.Reload()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "principals[0].classes.ssn")
	assert.Same(t, good, s.Current(), "a bad file keeps the policy in force")
	assert.False(t, s.Changed(), "the same bad file is not retried")

	require.NoError(t, os.Remove(path))
	assert.True(t, s.Changed())
	require.Error(t, s.Reload())
	assert.Same(t, good, s.Current())
}

func TestStoreWithoutFile(t *testing.T) {
	t.Parallel()
	dev := policy.Dev()
	s, err := policy.NewStore("", testClasses, dev)
	require.NoError(t, err)
	assert.Same(t, dev, s.Current())
	assert.False(t, s.Changed())
	assert.NoError(t, s.Reload())

	none, err := policy.NewStore("", testClasses, nil)
	require.NoError(t, err)
	assert.Nil(t, none.Current())

	_, err = policy.NewStore(writePolicy(t, "principals: []\n"), testClasses, dev)
	require.Error(t, err, "a bad file at start is an error, not the fixed policy")
}

func TestWatchReloadsOnChange(t *testing.T) {
	t.Parallel()
	path := writePolicy(t, storeV1)
	s, err := policy.NewStore(path, testClasses, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu      sync.Mutex
		results []error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) {
			mu.Lock()
			results = append(results, err)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(results)
	}

	require.NoError(t, os.WriteFile(path, []byte(storeV2), 0o600))
	require.Eventually(t, func() bool { return s.Current().Find("b") != nil }, 5*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool { return count() == 1 }, time.Second, 20*time.Millisecond)
	mu.Lock()
	assert.NoError(t, results[0])
	mu.Unlock()

	require.NoError(t, os.WriteFile(path, []byte("principals: []\n"), 0o600))
	require.Eventually(t, func() bool { return count() == 2 }, 5*time.Second, 50*time.Millisecond)
	mu.Lock()
	assert.ErrorContains(t, results[1], "principals: at least one is required")
	mu.Unlock()
	assert.NotNil(t, s.Current().Find("b"), "the policy in force stays")

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

// TestNilPolicyDeniesEveryone covers the policy a secure service gets without a policy
// file (policy.NewStore("", classes, nil), what app.Build does when insecure is false
// and policy_file is empty): it must deny every caller, not panic.
func TestNilPolicyDeniesEveryone(t *testing.T) {
	t.Parallel()
	s, err := policy.NewStore("", testClasses, nil)
	require.NoError(t, err)
	p := s.Current()
	require.Nil(t, p)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		run  func()
	}{
		{"Find", func() { assert.Nil(t, p.Find("spiffe://example.org/x")) }},
		{"Allow", func() {
			ok, _ := p.Allow(nil, now)
			assert.True(t, ok, "no principal: the request is refused by Decide, not the limiter")
		}},
		{"Revealed", func() {
			crossed, _ := p.Revealed(nil, 1, now)
			assert.False(t, crossed)
		}},
		{"Decide without a principal", func() {
			d := policy.Decide(policy.Request{Principal: nil, Caller: "x", Operation: policy.OpTokenize, Classes: []string{"ssn"}})
			assert.Equal(t, errs.PermissionDenied, errs.KindOf(d.Err))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.NotPanics(t, tc.run)
		})
	}
}
