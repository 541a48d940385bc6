package storetest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/tokenizer"
)

func subject() tokenizer.Subject {
	return tokenizer.Subject{Digest: random(16), DigestVersion: 1, AuditDigest: random(32), KeyRef: random32hex()}
}

func random32hex() string {
	const hexd = "0123456789abcdef"
	b := random(16)
	out := make([]byte, 32)
	for i, c := range b {
		out[2*i], out[2*i+1] = hexd[c>>4], hexd[c&0xf]
	}
	return string(out)
}

func insertSubject(t *testing.T, s Store) tokenizer.Subject {
	t.Helper()
	got, inserted, err := s.InsertSubject(t.Context(), subject())
	require.NoError(t, err)
	require.True(t, inserted)
	require.NotZero(t, got.ID)
	return got
}

func testSubjects(t *testing.T, s Store) {
	ctx := t.Context()
	a := insertSubject(t, s)
	b := insertSubject(t, s)
	assert.NotEqual(t, a.ID, b.ID)

	again := subject()
	again.Digest = a.Digest
	got, inserted, err := s.InsertSubject(ctx, again)
	require.NoError(t, err)
	assert.False(t, inserted, "a digest already stored is not inserted twice")
	assert.Equal(t, a.ID, got.ID)
	assert.Equal(t, a.KeyRef, got.KeyRef, "the stored subject comes back, not the one offered")

	byDigest, err := s.SubjectsByDigest(ctx, [][]byte{a.Digest, random(16)})
	require.NoError(t, err)
	require.Len(t, byDigest, 1)
	assert.Equal(t, a.AuditDigest, byDigest[string(a.Digest)].AuditDigest)

	// Mappings of a in two classes, one of b, one of nobody.
	var ms []tokenizer.Mapping
	for _, c := range []struct {
		class   string
		subject int64
		static  bool
	}{{"ssn", a.ID, true}, {"mrn", a.ID, false}, {"mrn", a.ID, false}, {"ssn", b.ID, true}, {"ssn", 0, true}} {
		m := mapping(c.class, c.static)
		m.Subject, m.KeyVersion = c.subject, 0
		ms = append(ms, m)
	}
	_, _, err = s.InsertStatic(ctx, []tokenizer.Mapping{ms[0], ms[3], ms[4]})
	require.NoError(t, err)
	_, err = s.InsertMappings(ctx, ms[1:3])
	require.NoError(t, err)
	found, err := s.LookupTokens(ctx, []tokenizer.Ref{ref(ms[0]), ref(ms[1]), ref(ms[4])})
	require.NoError(t, err)
	assert.Equal(t, a.ID, found[ref(ms[0]).Key()].Subject, "lookups return the subject")
	assert.Equal(t, a.ID, found[ref(ms[1]).Key()].Subject)
	assert.Zero(t, found[ref(ms[4]).Key()].Subject)
	fps, err := s.LookupFingerprints(ctx, []tokenizer.FingerprintRef{fpRef(ms[0])})
	require.NoError(t, err)
	assert.Equal(t, a.ID, fps[fpRef(ms[0]).Key()].Subject)

	counts, err := s.ForgetSubject(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"ssn": 1, "mrn": 2}, counts)
	found, err = s.LookupTokens(ctx, []tokenizer.Ref{ref(ms[0]), ref(ms[1]), ref(ms[2]), ref(ms[3]), ref(ms[4])})
	require.NoError(t, err)
	assert.Len(t, found, 2, "only the other subject's and the subject-less mapping are left")
	left, err := s.SubjectsByID(ctx, []int64{a.ID, b.ID})
	require.NoError(t, err)
	assert.Len(t, left, 1)
	assert.Contains(t, left, b.ID)

	counts, err = s.ForgetSubject(ctx, a.ID)
	require.NoError(t, err)
	assert.Empty(t, counts, "forgetting twice deletes nothing the second time")
}

func testSubjectReencrypt(t *testing.T, s Store) {
	ctx := t.Context()
	a := insertSubject(t, s)
	m := mapping("ssn", false)
	m.Subject, m.KeyVersion = a.ID, 0
	plain := mapping("ssn", false)
	_, err := s.InsertMappings(ctx, []tokenizer.Mapping{m, plain})
	require.NoError(t, err)
	counts, err := s.CountByKeyVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[int]int64{1: 1}, counts, "subject rows are under their subject's key, not a value key version")
	n, err := s.Reencrypt(ctx, 2, 10, func(m *tokenizer.Mapping) error {
		assert.Zero(t, m.Subject, "a subject row is never handed to re-encryption")
		m.KeyVersion = 2
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}
