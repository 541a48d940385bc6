package tokenizer_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// subjectEngine is an engine with the development classes and subjects on (own tokens
// in mrn), its keys from the key file in dir; the subject key vault is in dir too.
func subjectEngine(t *testing.T, st backing, dir string) (*tokenizer.Engine, *keys.LocalSubjects) {
	t.Helper()
	var classes []*tokenizer.Class
	for _, c := range config.DefaultClasses() {
		cl, err := tokenizer.Compile(c)
		require.NoError(t, err)
		classes = append(classes, cl)
	}
	p, _, err := keys.OpenLocal(filepath.Join(dir, "kek"))
	require.NoError(t, err)
	kr := keys.NewKeyring(p, st)
	require.NoError(t, kr.Ensure(t.Context(), tokenizer.KeyPurposes(classes)...))
	e, err := tokenizer.New(classes, st, kr, tokenizer.Limits{MaxItems: 100, MaxValueBytes: 64})
	require.NoError(t, err)
	v, err := keys.NewLocalSubjects(filepath.Join(dir, "subjects"), p)
	require.NoError(t, err)
	require.NoError(t, e.EnableSubjects(st.(tokenizer.SubjectStore), v, "mrn", time.Minute))
	return e, v
}

func TestSubjectsInTheEngine(t *testing.T) {
	t.Parallel()
	forEachBacking(t, func(t *testing.T, st backing) {
		ctx := t.Context()
		dir := t.TempDir()
		e, v := subjectEngine(t, st, dir)
		items := []tokenizer.TokenizeItem{
			{Class: "ssn_fpe", Value: "123-45-6789", Subject: "MRN-00000001"},
			{Class: "ssn_fpe", Value: "123-45-6789", Subject: "MRN-00000002"},
			{Class: "ssn_fpe", Value: "123-45-6789"},
			{Class: "ssn", Value: "123-45-6789", Subject: " MRN"},
			{Class: "ssn", Value: "123-45-6789", Subject: "not an mrn"},
		}
		res, err := e.Tokenize(ctx, items, 0)
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		assert.NotEqual(t, res[0].Token, res[1].Token, "FF1 under each subject's own key")
		assert.NotEqual(t, res[0].Token, res[2].Token)
		assert.Regexp(t, `^MRN-\d{8}$`, res[0].SubjectToken)
		assert.Len(t, res[0].SubjectDigest, 32)
		assert.Equal(t, errs.InvalidArgument, errs.KindOf(res[3].Err), "subject with white space")
		assert.ErrorContains(t, res[4].Err, "subject: does not fit the format of the subject class mrn")

		// The subject's key destroyed behind the engine's back (a restored backup):
		// reveals are NOT_FOUND once the cached key is gone from this engine too, and
		// the next tokenize of that patient finishes the erasure and starts afresh.
		subj, err := e.SubjectInfo(ctx, "MRN-00000001")
		require.NoError(t, err)
		require.NoError(t, v.DestroySubjectKey(ctx, subj.KeyRef))
		fresh, _ := subjectEngine(t, st, dir) // another replica: its subject-key cache is empty
		got, err := fresh.Detokenize(ctx, []tokenizer.DetokenizeItem{{Class: "ssn_fpe", Token: res[0].Token}, {Class: "ssn_fpe", Token: res[1].Token}})
		require.NoError(t, err)
		assert.Equal(t, errs.NotFound, errs.KindOf(got[0].Err))
		assert.Equal(t, "123-45-6789", got[1].Value)
		again, err := fresh.Tokenize(ctx, items[:1], 0)
		require.NoError(t, err)
		require.NoError(t, again[0].Err)
		assert.NotEqual(t, res[0].Token, again[0].Token)
		now, err := fresh.SubjectInfo(ctx, "MRN-00000001")
		require.NoError(t, err)
		assert.NotEqual(t, subj.ID, now.ID, "a new subject replaced the one whose key was gone")

		er, err := fresh.ForgetSubject(ctx, "MRN-00000002")
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"ssn_fpe": 1, "mrn": 1}, er.Counts)
		_, err = fresh.ForgetSubject(ctx, "MRN-00000002")
		assert.Equal(t, errs.NotFound, errs.KindOf(err))
	})
}
