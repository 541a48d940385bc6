package tokenizer_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/store/memory"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// backing is a store the engine runs on in these tests: the engine must behave the
// same on PostgreSQL and in memory.
type backing interface {
	tokenizer.Store
	keys.Store
}

var backings = map[string]func(t *testing.T) backing{
	"postgres": func(t *testing.T) backing {
		st, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{MaxConns: 8, ConnectTimeout: 2 * time.Second})
		require.NoError(t, err)
		t.Cleanup(st.Close)
		_, err = st.Migrate(t.Context())
		require.NoError(t, err)
		return st
	},
	"memory": func(*testing.T) backing { return memory.New() },
}

// engineOn builds an engine with the development classes plus extra ones on st.
func engineOn(t *testing.T, st backing, extra ...config.Class) *tokenizer.Engine {
	t.Helper()
	var classes []*tokenizer.Class
	for _, c := range append(config.DefaultClasses(), extra...) {
		cl, err := tokenizer.Compile(c)
		require.NoError(t, err)
		classes = append(classes, cl)
	}
	p, _, err := keys.OpenLocal(filepath.Join(t.TempDir(), "kek"))
	require.NoError(t, err)
	kr := keys.NewKeyring(p, st)
	require.NoError(t, kr.Ensure(t.Context(), tokenizer.KeyPurposes(classes)...))
	e, err := tokenizer.New(classes, st, kr, tokenizer.Limits{MaxItems: 5000, MaxValueBytes: 64})
	require.NoError(t, err)
	return e
}

func forEachBacking(t *testing.T, f func(t *testing.T, st backing)) {
	for name, mk := range backings {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, mk(t))
		})
	}
}

func TestEngineRoundTripAndModes(t *testing.T) {
	t.Parallel()
	forEachBacking(t, func(t *testing.T, st backing) {
		ctx := t.Context()
		e := engineOn(t, st)
		items := []tokenizer.TokenizeItem{
			{Class: "ssn", Value: "123-45-6789"},
			{Class: "ssn", Value: "123-45-6789"},
			{Class: "ssn", Value: "123-45-6789", Scope: "other"},
			{Class: "ssn_dynamic", Value: "123-45-6789"},
			{Class: "ssn_dynamic", Value: "123-45-6789"},
			{Class: "ssn_fpe", Value: "123-45-6789"},
			{Class: "ssn", Value: "not an ssn"},
			{Class: "nope", Value: "x"},
		}
		res, err := e.Tokenize(ctx, items, 0)
		require.NoError(t, err)
		require.Len(t, res, len(items))
		for i := range 6 {
			require.NoError(t, res[i].Err, "item %d", i)
		}
		assert.Equal(t, res[0].Token, res[1].Token, "static: same value, same token within a batch")
		assert.NotEqual(t, res[0].Token, res[2].Token, "another scope, another token")
		assert.NotEqual(t, res[3].Token, res[4].Token, "dynamic: a fresh token each time")
		assert.Equal(t, errs.InvalidArgument, errs.KindOf(res[6].Err))
		assert.NotContains(t, res[6].Err.Error(), "not an ssn", "errors never echo the value")
		assert.Equal(t, errs.InvalidArgument, errs.KindOf(res[7].Err))

		again, err := e.Tokenize(ctx, items[:1], 0)
		require.NoError(t, err)
		assert.Equal(t, res[0].Token, again[0].Token, "static across requests")

		var det []tokenizer.DetokenizeItem
		for i := range 6 {
			det = append(det, tokenizer.DetokenizeItem{Class: items[i].Class, Token: res[i].Token})
		}
		det = append(det, tokenizer.DetokenizeItem{Class: "ssn", Token: "999-99-9999"})
		out, err := e.Detokenize(ctx, det)
		require.NoError(t, err)
		for i := range 6 {
			require.NoError(t, out[i].Err)
			assert.Equal(t, "123-45-6789", out[i].Value)
			assert.NotEmpty(t, out[i].Digest, "a reveal carries its audit digest")
		}
		assert.Equal(t, errs.NotFound, errs.KindOf(out[6].Err))
	})
}

func TestEngineExpiryAndDelete(t *testing.T) {
	t.Parallel()
	forEachBacking(t, func(t *testing.T, st backing) {
		ctx := t.Context()
		e := engineOn(t, st)
		res, err := e.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "mrn", Value: "MRN-00000001"}, {Class: "mrn", Value: "MRN-00000002"}}, 50*time.Millisecond)
		require.NoError(t, err)
		require.NotNil(t, res[0].ExpiresAt)
		time.Sleep(100 * time.Millisecond)
		out, err := e.Detokenize(ctx, []tokenizer.DetokenizeItem{{Class: "mrn", Token: res[0].Token}})
		require.NoError(t, err)
		assert.Equal(t, errs.NotFound, errs.KindOf(out[0].Err), "expired")
		fresh, err := e.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "mrn", Value: "MRN-00000001"}}, 0)
		require.NoError(t, err)
		require.NoError(t, fresh[0].Err, "an expired value can be tokenized afresh")

		del, err := e.DeleteTokens(ctx, []tokenizer.DeleteItem{{Class: "mrn", Token: fresh[0].Token}, {Class: "mrn", Value: "MRN-00000009"}})
		require.NoError(t, err)
		assert.True(t, del[0].Deleted)
		require.NoError(t, del[1].Err, "nothing to delete is not an error")
		assert.False(t, del[1].Deleted, "nothing to delete")
		out, err = e.Detokenize(ctx, []tokenizer.DetokenizeItem{{Class: "mrn", Token: fresh[0].Token}})
		require.NoError(t, err)
		assert.Equal(t, errs.NotFound, errs.KindOf(out[0].Err), "deleted")
	})
}

// TestEngineSmallTokenSpaceNeverSharesATokenWithinABatch: in a class of 10^6 tokens a
// batch of 3,000 dynamic values draws some token twice with near certainty (birthday
// bound); each value must still get its own token and reveal itself.
func TestEngineSmallTokenSpaceNeverSharesATokenWithinABatch(t *testing.T) {
	t.Parallel()
	small := config.Class{Name: "visit", Format: "999999", Mode: "dynamic"}
	smallStatic := config.Class{Name: "room", Format: "999999", Mode: "static"}
	forEachBacking(t, func(t *testing.T, st backing) {
		ctx := t.Context()
		e := engineOn(t, st, small, smallStatic)
		for _, class := range []string{"visit", "room"} {
			items := make([]tokenizer.TokenizeItem, 3000)
			for i := range items {
				items[i] = tokenizer.TokenizeItem{Class: class, Value: fmt.Sprintf("%06d", i)}
			}
			res, err := e.Tokenize(ctx, items, 0)
			require.NoError(t, err)
			seen := map[string]bool{}
			det := make([]tokenizer.DetokenizeItem, len(res))
			for i, r := range res {
				require.NoError(t, r.Err)
				require.False(t, seen[r.Token], "class %s: token issued twice", class)
				seen[r.Token] = true
				det[i] = tokenizer.DetokenizeItem{Class: class, Token: r.Token}
			}
			out, err := e.Detokenize(ctx, det)
			require.NoError(t, err)
			for i, o := range out {
				require.NoError(t, o.Err)
				require.Equal(t, items[i].Value, o.Value, "class %s: item %d reveals another value", class, i)
			}
		}
	})
}

// conflicting fails every write with a serialization failure, as PostgreSQL does under
// contention.
type conflicting struct{ backing }

func (conflicting) InsertStatic(context.Context, []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	return nil, nil, fmt.Errorf("postgres: insert static mappings failed (SQLSTATE 40001): %w", errs.ErrConflict)
}

func TestEngineKeepsTheStoreErrorClass(t *testing.T) {
	t.Parallel()
	st := conflicting{memory.New()}
	e := engineOn(t, st)
	_, err := e.Tokenize(t.Context(), []tokenizer.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}, 0)
	require.Error(t, err)
	assert.True(t, errors.Is(err, errs.ErrConflict), "the conflict reaches the edge as such: %v", err)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = e.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}, 0)
	assert.ErrorIs(t, err, context.Canceled, "the caller's cancellation is not a store failure")
}

// TestVaultlessFF1: a storage-none FF1 class writes no row, reveals by decryption,
// refuses what it cannot do (scope, ttl, delete), and never reveals a wrong value.
func TestVaultlessFF1(t *testing.T) {
	t.Parallel()
	classes := []config.Class{
		{Name: "ssn_ff1", Format: "ssn", Mode: "static", Generator: "fpe", Storage: "none"},
		{Name: "card_ff1", Format: "credit_card", Mode: "static", Generator: "fpe", Storage: "none", PreserveSuffix: 4},
		{Name: "acct_ff1", Format: "MRN-99999999", Mode: "static", Generator: "fpe", Storage: "none"},
	}
	forEachBacking(t, func(t *testing.T, st backing) {
		ctx := t.Context()
		e := engineOn(t, st, classes...)
		values := map[string][]string{
			"ssn_ff1":  {"123-45-6789", "234-56-7890", "078-05-1120"},
			"card_ff1": {"4111111111111111", "5500005555555559"},
			"acct_ff1": {"MRN-12345678", "MRN-00000001"},
		}
		for class, vs := range values {
			var items []tokenizer.TokenizeItem
			for _, v := range vs {
				items = append(items, tokenizer.TokenizeItem{Class: class, Value: v})
			}
			res, err := e.Tokenize(ctx, items, 0)
			require.NoError(t, err)
			var det []tokenizer.DetokenizeItem
			for i, r := range res {
				require.NoError(t, r.Err, "%s %d", class, i)
				assert.NotEqual(t, vs[i], r.Token)
				det = append(det, tokenizer.DetokenizeItem{Class: class, Token: r.Token})
			}
			again, err := e.Tokenize(ctx, items, 0)
			require.NoError(t, err)
			for i := range res {
				assert.Equal(t, res[i].Token, again[i].Token, "deterministic")
			}
			out, err := e.Detokenize(ctx, det)
			require.NoError(t, err)
			for i, o := range out {
				require.NoError(t, o.Err, "%s %d", class, i)
				assert.Equal(t, vs[i], o.Value, "%s: decryption gives the value back", class)
				assert.NotEmpty(t, o.Digest, "reveals are audited by digest as for every class")
			}
		}
		if mem, ok := st.(*memory.Store); ok {
			counts, err := mem.CountByKeyVersion(ctx)
			require.NoError(t, err)
			assert.Empty(t, counts, "no row per value")
		}
		res, err := e.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "ssn_ff1", Value: "123-45-6789", Scope: "a"}}, 0)
		require.NoError(t, err)
		assert.ErrorContains(t, res[0].Err, "scope is not supported")
		res, err = e.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "ssn_ff1", Value: "123-45-6789"}}, time.Hour)
		require.NoError(t, err)
		assert.ErrorContains(t, res[0].Err, "cannot expire")
		del, err := e.DeleteTokens(ctx, []tokenizer.DeleteItem{{Class: "ssn_ff1", Token: "123-45-6789"}})
		require.NoError(t, err)
		assert.Equal(t, errs.FailedPrecondition, errs.KindOf(del[0].Err))
	})
}

func TestVaultlessNeedsFF1(t *testing.T) {
	t.Parallel()
	for _, c := range []config.Class{
		{Name: "a", Format: "ssn", Mode: "static", Storage: "none"},
		{Name: "b", Format: "ssn", Mode: "dynamic", Storage: "none"},
		{Name: "c", Format: "ssn", Mode: "static", Generator: "fpe", Storage: "none", TTL: time.Hour},
		{Name: "d", Format: "ssn", Mode: "static", Generator: "fpe", Storage: "disk"},
	} {
		_, err := tokenizer.Compile(c)
		assert.Error(t, err, c.Name)
		assert.Contains(t, err.Error(), "storage", c.Name)
	}
}

// TestVaultlessRevealIsNeverWrong: any well-formed token decrypts; whatever it reveals
// tokenizes back to the same token, so a reveal is never another value's. Tokens are
// drawn at random in several formats (check digits, preserved characters, letters in
// either case), most of them never issued.
func TestVaultlessRevealIsNeverWrong(t *testing.T) {
	t.Parallel()
	classes := []config.Class{
		{Name: "ssn_ff1", Format: "ssn", Mode: "static", Generator: "fpe", Storage: "none"},
		{Name: "card_ff1", Format: "credit_card", Mode: "static", Generator: "fpe", Storage: "none", PreserveSuffix: 4},
		{Name: "acct_ff1", Format: "MRN-99999999", Mode: "static", Generator: "fpe", Storage: "none"},
		{Name: "code_ff1", Format: "AA-AAAAAA", Mode: "static", Generator: "fpe", Storage: "none"},
		{Name: "date_ff1", Format: "date", Mode: "static", Generator: "fpe", Storage: "none", Distinguishable: new(bool)},
	}
	e := engineOn(t, memory.New(), classes...)
	rng := rand.New(rand.NewPCG(1, 2))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + rng.IntN(10))
		}
		return string(b)
	}
	letters := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('A' + rng.IntN(26))
			if rng.IntN(4) == 0 {
				b[i] += 'a' - 'A'
			}
		}
		return string(b)
	}
	draw := map[string]func() string{
		"ssn_ff1":  func() string { d := digits(9); return d[:3] + "-" + d[3:5] + "-" + d[5:] },
		"card_ff1": func() string { return "4" + digits(15) },
		"acct_ff1": func() string { return "MRN-" + digits(8) },
		"code_ff1": func() string { return letters(2) + "-" + letters(6) },
		"date_ff1": func() string {
			return fmt.Sprintf("%04d-%02d-%02d", 1900+rng.IntN(200), 1+rng.IntN(12), 1+rng.IntN(31))
		},
	}
	for _, c := range classes {
		var det []tokenizer.DetokenizeItem
		for range 400 {
			det = append(det, tokenizer.DetokenizeItem{Class: c.Name, Token: draw[c.Name]()})
		}
		out, err := e.Detokenize(t.Context(), det)
		require.NoError(t, err)
		revealed := 0
		for i, o := range out {
			if o.Err != nil {
				kind := errs.KindOf(o.Err)
				assert.True(t, kind == errs.NotFound || kind == errs.InvalidArgument, "%s: %v", c.Name, o.Err)
				continue
			}
			revealed++
			back, err := e.Tokenize(t.Context(), []tokenizer.TokenizeItem{{Class: c.Name, Value: o.Value}}, 0)
			require.NoError(t, err)
			require.NoError(t, back[0].Err, "%s: a revealed value tokenizes", c.Name)
			assert.Equal(t, det[i].Token, back[0].Token, "%s: %s reveals a value whose token is %s", c.Name, det[i].Token, back[0].Token)
		}
		assert.Positive(t, revealed, "%s: storage none: well-formed tokens reveal values (documented)", c.Name)
	}
}
