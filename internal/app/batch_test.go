package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

const batchPolicy = `
principals:
  - id: clerk
    classes:
      ssn: [tokenize, detokenize]
      mrn: [tokenize]
    purposes: [TREAT]
    break_glass: true
    rate_limit: {reveals_per_minute: 2}
`

// events is an audit sink that keeps what it is given.
type events struct {
	mu  sync.Mutex
	got []*audit.Event
}

func (e *events) Append(_ context.Context, ev *audit.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
	return nil
}

// readyApp is an app on a fresh, migrated database with batchPolicy in force.
func readyApp(t *testing.T, sink audit.Sink) *app.App {
	t.Helper()
	cfg := testConfig(t, pgtest.NewDatabase(t))
	cfg.Dev = true
	cfg.Limits.MaxItems = 3
	cfg.PolicyFile = filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(cfg.PolicyFile, []byte(batchPolicy), 0o600))
	a, err := app.Build(context.Background(), cfg, quiet(), app.WithProvider(localProvider(t, cfg)), app.WithAuditSink(sink))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	require.NoError(t, a.Init(context.Background()))
	return a
}

// as returns a context for caller id with its policy entry and a fresh audit record.
func as(a *app.App, id string) (context.Context, *audit.Record) {
	ctx, rec := audit.WithRecord(context.Background())
	ctx = policy.WithCaller(ctx, policy.Caller{ID: id, Address: "127.0.0.1:1"})
	return policy.WithPrincipal(ctx, a.Policies.Current().Find(id)), rec
}

func tokenizeBatch(classes []string, check func() error, runs *int) app.Batch[tokenizer.TokenizeItem, tokenizer.TokenizeResult] {
	return app.Batch[tokenizer.TokenizeItem, tokenizer.TokenizeResult]{
		Op: policy.OpTokenize, Classes: classes, Check: check,
		Run: func(ctx context.Context, eng *tokenizer.Engine, items []tokenizer.TokenizeItem) ([]tokenizer.TokenizeResult, error) {
			*runs++
			return eng.Tokenize(ctx, items, 0)
		},
		Fail: func(err error) tokenizer.TokenizeResult { return tokenizer.TokenizeResult{Err: err} },
	}
}

func TestRunBatchTokenize(t *testing.T) {
	t.Parallel()
	a := readyApp(t, &events{})
	item := func(class, value string) tokenizer.TokenizeItem {
		return tokenizer.TokenizeItem{Class: class, Value: value}
	}
	tests := []struct {
		name        string
		caller      string
		items       []tokenizer.TokenizeItem
		check       func() error
		wantErr     string
		wantKind    errs.Kind
		wantRuns    int
		wantItemErr []errs.Kind // per item; -1: a token
		wantClasses []string
		wantDenied  []string
	}{
		{name: "all allowed", caller: "clerk", items: []tokenizer.TokenizeItem{item("ssn", "123-45-6789"), item("mrn", "MRN-12345678")},
			wantRuns: 1, wantItemErr: []errs.Kind{-1, -1}, wantClasses: []string{"ssn", "mrn"}},
		{name: "denied item in place", caller: "clerk", items: []tokenizer.TokenizeItem{item("email", "a@example.org"), item("ssn", "123-45-6780")},
			wantRuns: 1, wantItemErr: []errs.Kind{errs.PermissionDenied, -1}, wantClasses: []string{"email", "ssn"},
			wantDenied: []string{"class email: tokenize"}},
		{name: "unknown class goes to the engine", caller: "clerk", items: []tokenizer.TokenizeItem{item("123-45-6789", "x"), item("ssn", "123-45-6781")},
			wantRuns: 1, wantItemErr: []errs.Kind{errs.InvalidArgument, -1}, wantClasses: []string{"unknown", "ssn"}},
		{name: "every item denied runs nothing", caller: "clerk", items: []tokenizer.TokenizeItem{item("phone", "555-0100")},
			wantRuns: 0, wantItemErr: []errs.Kind{errs.PermissionDenied}, wantClasses: []string{"phone"},
			wantDenied: []string{"class phone: tokenize"}},
		{name: "unknown caller", caller: "stranger", items: []tokenizer.TokenizeItem{item("ssn", "123-45-6789")},
			wantErr: "caller stranger may not tokenize in any class", wantKind: errs.PermissionDenied, wantClasses: []string{"ssn"}},
		{name: "check fails", caller: "clerk", items: []tokenizer.TokenizeItem{item("ssn", "123-45-6789")},
			check:   func() error { return errs.New(errs.InvalidArgument, "ttl: must not be negative") },
			wantErr: "ttl: must not be negative", wantKind: errs.InvalidArgument, wantClasses: []string{"ssn"}},
		{name: "over the item limit", caller: "clerk", items: []tokenizer.TokenizeItem{item("ssn", "1"), item("ssn", "2"), item("ssn", "3"), item("ssn", "4")},
			wantErr: "items: 4 items exceed the limit of 3 per request", wantKind: errs.InvalidArgument,
			wantClasses: []string{"ssn", "ssn", "ssn", "ssn"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, rec := as(a, tc.caller)
			classes := make([]string, len(tc.items))
			for i, it := range tc.items {
				classes[i] = it.Class
			}
			runs := 0
			res, d, err := app.RunBatch(ctx, a, tc.items, tokenizeBatch(classes, tc.check, &runs))
			assert.Equal(t, tc.wantClasses, rec.Classes, "the record never holds an unconfigured class name")
			assert.Equal(t, len(tc.items), rec.Items)
			assert.Equal(t, tc.wantRuns, runs)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Equal(t, tc.wantKind, errs.KindOf(err))
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.Nil(t, res)
				return
			}
			require.NoError(t, err)
			require.NoError(t, d.Err)
			assert.Equal(t, tc.wantDenied, rec.Denied)
			require.Len(t, res, len(tc.items))
			for i, want := range tc.wantItemErr {
				if want == -1 {
					require.NoError(t, res[i].Err, "item %d", i)
					assert.NotEmpty(t, res[i].Token, "item %d", i)
					assert.NotEqual(t, tc.items[i].Value, res[i].Token)
					continue
				}
				require.Error(t, res[i].Err, "item %d", i)
				assert.Equal(t, want, errs.KindOf(res[i].Err), "item %d", i)
				assert.Empty(t, res[i].Token)
				assert.NotContains(t, res[i].Err.Error(), tc.items[i].Value, "no value in errors")
			}
		})
	}
}

func TestRunBatchDetokenizeRecordsPurpose(t *testing.T) {
	t.Parallel()
	a := readyApp(t, &events{})
	ctx, _ := as(a, "clerk")
	runs := 0
	toks, _, err := app.RunBatch(ctx, a, []tokenizer.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}, tokenizeBatch([]string{"ssn"}, nil, &runs))
	require.NoError(t, err)
	token := toks[0].Token

	detok := func(purpose, justification string) app.Batch[tokenizer.DetokenizeItem, tokenizer.DetokenizeResult] {
		return app.Batch[tokenizer.DetokenizeItem, tokenizer.DetokenizeResult]{
			Op: policy.OpDetokenize, Classes: []string{"ssn"}, Purpose: purpose, Justification: justification,
			Run: func(ctx context.Context, eng *tokenizer.Engine, items []tokenizer.DetokenizeItem) ([]tokenizer.DetokenizeResult, error) {
				return eng.Detokenize(ctx, items)
			},
			Fail: func(err error) tokenizer.DetokenizeResult { return tokenizer.DetokenizeResult{Err: err} },
		}
	}
	tests := []struct {
		name              string
		purpose, justify  string
		wantErr           errs.Kind
		wantGlass         bool
		wantPurpose       string
		wantJustification string
	}{
		{name: "treatment", purpose: "TREAT", justify: "follow-up", wantErr: -1, wantPurpose: "TREAT", wantJustification: "follow-up"},
		{name: "break-glass", purpose: "ETREAT", justify: "unconscious patient", wantErr: -1, wantGlass: true,
			wantPurpose: "ETREAT", wantJustification: "unconscious patient"},
		{name: "purpose not granted", purpose: "HRESCH", wantErr: errs.PermissionDenied, wantPurpose: "HRESCH"},
		{name: "unknown purpose is not recorded", purpose: "NOPE", wantErr: errs.InvalidArgument},
		{name: "malformed justification is not recorded", purpose: "TREAT", justify: "\xff" + strings.Repeat("x", 10),
			wantErr: errs.InvalidArgument, wantPurpose: "TREAT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, rec := as(a, "clerk")
			res, d, err := app.RunBatch(ctx, a, []tokenizer.DetokenizeItem{{Class: "ssn", Token: token}}, detok(tc.purpose, tc.justify))
			assert.Equal(t, tc.wantPurpose, rec.PurposeOfUse)
			assert.Equal(t, tc.wantJustification, rec.Justification)
			assert.Equal(t, tc.wantGlass, rec.BreakGlass)
			if tc.wantErr != -1 {
				require.Error(t, err)
				assert.Equal(t, tc.wantErr, errs.KindOf(err))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantGlass, d.BreakGlass)
			require.Len(t, res, 1)
			require.NoError(t, res[0].Err)
			assert.Equal(t, "123-45-6789", res[0].Value)
		})
	}
}

func TestRunBatchNotReady(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "postgres://postgres@127.0.0.1:1/none?sslmode=disable")
	cfg.Insecure = true // the development policy: a secure app without a policy file has none
	a, err := app.Build(context.Background(), cfg, quiet(), app.WithoutKeys())
	require.NoError(t, err)
	t.Cleanup(a.Close)
	ctx, _ := as(a, "dev")
	runs := 0
	_, _, err = app.RunBatch(ctx, a, []tokenizer.TokenizeItem{{Class: "ssn", Value: "1"}}, tokenizeBatch([]string{"ssn"}, nil, &runs))
	require.Error(t, err)
	assert.Equal(t, errs.Unavailable, errs.KindOf(err))
	assert.Zero(t, runs)
}

func TestCountReveals(t *testing.T) {
	t.Parallel()
	sink := &events{}
	a := readyApp(t, sink)
	ctx, rec := as(a, "clerk")
	rec.Caller = "clerk"
	tests := []struct {
		name   string
		n      int
		want   string
		events int
	}{
		{"under the threshold", 2, "", 0},
		{"over the threshold", 1, "clerk", 1},
		{"once per window", 5, "", 1},
	}
	for _, tc := range tests { // sequential: one window
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, a.CountReveals(ctx, "req-1", tc.n, 0))
			sink.mu.Lock()
			defer sink.mu.Unlock()
			require.Len(t, sink.got, tc.events)
		})
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	ev := sink.got[0]
	assert.Equal(t, "anomaly", ev.Operation)
	assert.Equal(t, "clerk", ev.Caller)
	assert.Equal(t, 3, ev.Items)
	assert.Contains(t, ev.Reason, "above the threshold of 2")

	other, _ := as(a, "stranger")
	assert.Equal(t, "", a.CountReveals(other, "req-2", 100, 0), "no principal, no window")
}
