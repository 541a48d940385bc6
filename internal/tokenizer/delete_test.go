package tokenizer_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// TestEngineDeleteSemantics pins what docs/api.md (DeleteTokens) promises: a mapping
// named several times in one batch is deleted once and reported deleted by its first
// item only; an unknown or already deleted token is deleted: false without an error;
// after deletion a static value gets a new token from the random generator (the old
// one stays dead), and its old token again from FF1 (the token is a function of the
// value and the key).
func TestEngineDeleteSemantics(t *testing.T) {
	t.Parallel()
	forEachBacking(t, func(t *testing.T, st backing) {
		ctx := t.Context()
		e := engineOn(t, st)
		res, err := e.Tokenize(ctx, []tokenizer.TokenizeItem{
			{Class: "ssn", Value: "123-45-6789"}, {Class: "ssn_fpe", Value: "123-45-6789"}, {Class: "mrn", Value: "MRN-00000042"},
		}, 0)
		require.NoError(t, err)
		ssnTok, fpeTok, mrnTok := res[0].Token, res[1].Token, res[2].Token

		del, err := e.DeleteTokens(ctx, []tokenizer.DeleteItem{
			{Class: "ssn", Token: ssnTok},         // 0: deletes
			{Class: "ssn", Token: ssnTok},         // 1: the same token again
			{Class: "ssn", Value: "123-45-6789"},  // 2: the same mapping by value
			{Class: "ssn", Token: "999-99-9999"},  // 3: well-formed, unknown
			{Class: "mrn", Value: "MRN-00000042"}, // 4: by value first
			{Class: "mrn", Token: mrnTok},         // 5: then by token
			{Class: "ssn_fpe", Token: fpeTok},     // 6
		})
		require.NoError(t, err)
		var deleted []bool
		for i, r := range del {
			require.NoError(t, r.Err, "item %d", i)
			deleted = append(deleted, r.Deleted)
			if !r.Deleted {
				assert.Empty(t, r.Digest, "item %d: an audit digest only for what was deleted", i)
			}
		}
		assert.Equal(t, []bool{true, false, false, false, true, false, true}, deleted)

		again, err := e.DeleteTokens(ctx, []tokenizer.DeleteItem{{Class: "ssn", Token: ssnTok}})
		require.NoError(t, err)
		require.NoError(t, again[0].Err)
		assert.False(t, again[0].Deleted, "deleting again: nothing to delete")

		// Errors stay errors: a token that does not fit the class, no token or value.
		bad, err := e.DeleteTokens(ctx, []tokenizer.DeleteItem{{Class: "ssn", Token: "12"}, {Class: "ssn"}})
		require.NoError(t, err)
		assert.Equal(t, errs.InvalidArgument, errs.KindOf(bad[0].Err))
		assert.Equal(t, errs.InvalidArgument, errs.KindOf(bad[1].Err))

		fresh, err := e.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}, {Class: "ssn_fpe", Value: "123-45-6789"}}, 0)
		require.NoError(t, err)
		require.NoError(t, fresh[0].Err)
		assert.NotEqual(t, ssnTok, fresh[0].Token, "random generator: a new token after deletion")
		assert.Equal(t, fpeTok, fresh[1].Token, "FF1: the same token after deletion")
		out, err := e.Detokenize(ctx, []tokenizer.DetokenizeItem{{Class: "ssn", Token: ssnTok}, {Class: "ssn", Token: fresh[0].Token}, {Class: "ssn_fpe", Token: fpeTok}})
		require.NoError(t, err)
		assert.Equal(t, errs.NotFound, errs.KindOf(out[0].Err), "the deleted random token stays dead")
		assert.Equal(t, "123-45-6789", out[1].Value)
		assert.Equal(t, "123-45-6789", out[2].Value, "the FF1 token reveals again once the value is tokenized again")
	})
}
