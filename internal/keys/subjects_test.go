package keys

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLocalSubjects(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	p, _, err := OpenLocal(filepath.Join(dir, "kek.hex"))
	require.NoError(t, err)
	v, err := NewLocalSubjects(filepath.Join(dir, "subjects"), p)
	require.NoError(t, err)

	ref := NewSubjectRef()
	assert.True(t, ValidSubjectRef(ref))
	k, err := v.NewSubjectKey(ctx, ref)
	require.NoError(t, err)
	require.Len(t, k, DataKeySize)
	_, err = v.NewSubjectKey(ctx, ref)
	assert.Error(t, err, "a reference is never reused")
	got, err := v.SubjectKey(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, k, got)

	// Another provider (another key file) cannot unwrap it.
	other, _, err := OpenLocal(filepath.Join(t.TempDir(), "other.hex"))
	require.NoError(t, err)
	ov, err := NewLocalSubjects(filepath.Join(dir, "subjects"), other)
	require.NoError(t, err)
	_, err = ov.SubjectKey(ctx, ref)
	assert.ErrorIs(t, err, ErrCorrupt)

	require.NoError(t, v.DestroySubjectKey(ctx, ref))
	_, err = v.SubjectKey(ctx, ref)
	assert.ErrorIs(t, err, ErrSubjectKeyGone)
	assert.NoError(t, v.DestroySubjectKey(ctx, ref), "destroying twice succeeds")

	for _, bad := range []string{"", "../kek.hex", "ABCDEF", NewSubjectRef() + "0"} {
		_, err := v.SubjectKey(ctx, bad)
		assert.ErrorContains(t, err, "malformed", bad)
		assert.Error(t, v.DestroySubjectKey(ctx, bad))
	}
}
