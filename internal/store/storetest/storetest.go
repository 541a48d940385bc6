// Package storetest is the conformance suite of the storage interfaces the domain
// declares (spicedb's datastore/test, keto's ManagerTest): one suite, run against the
// PostgreSQL store and the in-memory store, so that both behave alike.
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/grant"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// Store is everything a storage implementation provides.
type Store interface {
	tokenizer.Store
	tokenizer.Reencrypter
	tokenizer.OffsetStore
	tokenizer.SubjectStore
	grant.Store
	audit.ChainStore
	keys.Store
}

// Run runs the suite; newStore returns an empty store for one subtest.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := map[string]func(*testing.T, Store){
		"InsertMappingsSkipsTakenDigests":   testInsertMappings,
		"InsertStaticReturnsExistingHolder": testInsertStatic,
		"ExpiredRowsAreInvisibleAndPurged":  testExpiry,
		"LookupNeedsTheClass":               testLookupClass,
		"DeleteTokens":                      testDelete,
		"ConcurrentStaticInsertsOneWinner":  testConcurrentStatic,
		"ReencryptMovesOldRowsInBatches":    testReencrypt,
		"DataKeys":                          testDataKeys,
		"AuditAppendChainsOntoTheHead":      testAuditAppend,
		"AuditCheckpoints":                  testCheckpoints,
		"DisclosuresByDigestAndTime":        testDisclosures,
		"FailedAuditBuildAppendsNothing":    testAuditBuildError,
		"CanceledContextIsReportedAsSuch":   testCanceled,
		"SubjectsInsertLookupForget":        testSubjects,
		"SubjectRowsAreNotReencrypted":      testSubjectReencrypt,
		"GrantsApproveRevokeReviewErase":    testGrants,
		"OffsetsFirstWriterWins":            testOffsets,
		"OffsetsGoWithTheirSubject":         testSubjectOffsets,
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, newStore(t))
		})
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func mapping(class string, static bool) tokenizer.Mapping {
	m := tokenizer.Mapping{Class: class, TokenDigest: random(16), DigestVersion: 1, ValueCT: random(40), KeyVersion: 1}
	if static {
		m.Fingerprint, m.FingerprintVersion, m.TokenCT = random(16), 1, random(30)
	}
	return m
}

func ref(m tokenizer.Mapping) tokenizer.Ref {
	return tokenizer.Ref{Class: m.Class, Digest: m.TokenDigest}
}

func fpRef(m tokenizer.Mapping) tokenizer.FingerprintRef {
	return tokenizer.FingerprintRef{Class: m.Class, Scope: m.Scope, Fingerprint: m.Fingerprint}
}

func testInsertMappings(t *testing.T, s Store) {
	ctx := t.Context()
	a, b := mapping("ssn", false), mapping("ssn", false)
	dup := a
	dup.ValueCT = random(40)
	got, err := s.InsertMappings(ctx, []tokenizer.Mapping{a, b, dup})
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true, false}, got, "a digest already taken (even in the same call) is skipped")
	found, err := s.LookupTokens(ctx, []tokenizer.Ref{ref(a), ref(b)})
	require.NoError(t, err)
	require.Len(t, found, 2)
	assert.Equal(t, a.ValueCT, found[ref(a).Key()].ValueCT, "the first row for a digest is kept")
	assert.Equal(t, 1, found[ref(a).Key()].KeyVersion)
	assert.False(t, found[ref(a).Key()].CreatedAt.IsZero(), "created_at is set by the store")
}

func testInsertStatic(t *testing.T, s Store) {
	ctx := t.Context()
	first := mapping("ssn", true)
	first.Scope = "tenant-a"
	ins, existing, err := s.InsertStatic(ctx, []tokenizer.Mapping{first})
	require.NoError(t, err)
	assert.Equal(t, []bool{true}, ins)
	assert.Empty(t, existing)

	again := mapping("ssn", true)
	again.Scope, again.Fingerprint = "tenant-a", first.Fingerprint // same value, new token drawn
	other := mapping("ssn", true)
	ins, existing, err = s.InsertStatic(ctx, []tokenizer.Mapping{again, other})
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true}, ins)
	require.Len(t, existing, 1)
	held := existing[fpRef(first).Key()]
	assert.Equal(t, first.TokenDigest, held.TokenDigest, "the value's existing token comes back")
	assert.Equal(t, first.TokenCT, held.TokenCT)

	byFP, err := s.LookupFingerprints(ctx, []tokenizer.FingerprintRef{fpRef(first), {Class: "ssn", Scope: "tenant-b", Fingerprint: first.Fingerprint}})
	require.NoError(t, err)
	assert.Len(t, byFP, 1, "a fingerprint is found only in its own class and scope")
}

// testStaticSameDigest: two values of one batch that drew the same random token. Only
// the first may be reported inserted; the second must be redrawn, or it would be told
// a token that reveals the other value.
func testStaticSameDigest(t *testing.T, s Store) {
	ctx := t.Context()
	a, b := mapping("ssn", true), mapping("ssn", true)
	b.TokenDigest = a.TokenDigest
	ins, existing, err := s.InsertStatic(ctx, []tokenizer.Mapping{a, b})
	require.NoError(t, err)
	assert.Equal(t, []bool{true, false}, ins)
	assert.Empty(t, existing, "b's value has no token yet")
	found, err := s.LookupFingerprints(ctx, []tokenizer.FingerprintRef{fpRef(a), fpRef(b)})
	require.NoError(t, err)
	assert.Len(t, found, 1, "only a's value is stored")
	assert.Contains(t, found, fpRef(a).Key())
}

func testExpiry(t *testing.T, s Store) {
	ctx := t.Context()
	past := time.Now().Add(-time.Hour).UTC()
	future := time.Now().Add(time.Hour).UTC()
	old, live := mapping("mrn", true), mapping("mrn", true)
	old.ExpiresAt, live.ExpiresAt = &past, &future
	ins, err := s.InsertMappings(ctx, []tokenizer.Mapping{old, live})
	require.NoError(t, err)
	require.Equal(t, []bool{true, true}, ins)
	found, err := s.LookupTokens(ctx, []tokenizer.Ref{ref(old), ref(live)})
	require.NoError(t, err)
	assert.Len(t, found, 1, "an expired token is not found")
	require.Contains(t, found, ref(live).Key())
	assert.WithinDuration(t, future, *found[ref(live).Key()].ExpiresAt, time.Millisecond)

	// The expired row still holds its fingerprint: a new token for the value is not
	// inserted and no live holder is returned, until the expired row is purged.
	renewed := mapping("mrn", true)
	renewed.Fingerprint = old.Fingerprint
	ins, existing, err := s.InsertStatic(ctx, []tokenizer.Mapping{renewed})
	require.NoError(t, err)
	assert.Equal(t, []bool{false}, ins)
	assert.Empty(t, existing)
	n, err := s.PurgeExpiredFingerprints(ctx, []tokenizer.FingerprintRef{fpRef(old), fpRef(live)})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "only the expired row goes")
	ins, _, err = s.InsertStatic(ctx, []tokenizer.Mapping{renewed})
	require.NoError(t, err)
	assert.Equal(t, []bool{true}, ins)
}

func testLookupClass(t *testing.T, s Store) {
	ctx := t.Context()
	m := mapping("ssn", false)
	_, err := s.InsertMappings(ctx, []tokenizer.Mapping{m})
	require.NoError(t, err)
	found, err := s.LookupTokens(ctx, []tokenizer.Ref{{Class: "mrn", Digest: m.TokenDigest}})
	require.NoError(t, err)
	assert.Empty(t, found, "a digest is looked up within its class")
	deleted, err := s.DeleteTokens(ctx, []tokenizer.Ref{{Class: "mrn", Digest: m.TokenDigest}})
	require.NoError(t, err)
	assert.Empty(t, deleted, "nor deleted from another class")
}

func testDelete(t *testing.T, s Store) {
	ctx := t.Context()
	a, b := mapping("ssn", true), mapping("ssn", false)
	_, err := s.InsertMappings(ctx, []tokenizer.Mapping{a, b})
	require.NoError(t, err)
	deleted, err := s.DeleteTokens(ctx, []tokenizer.Ref{ref(a), ref(a), {Class: "ssn", Digest: random(16)}})
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{ref(a).Key(): true}, deleted)
	deleted, err = s.DeleteTokens(ctx, []tokenizer.Ref{ref(a)})
	require.NoError(t, err)
	assert.Empty(t, deleted, "a deleted token is gone")
	found, err := s.LookupFingerprints(ctx, []tokenizer.FingerprintRef{fpRef(a)})
	require.NoError(t, err)
	assert.Empty(t, found, "deleting frees the fingerprint")
	again := mapping("ssn", true)
	again.Fingerprint = a.Fingerprint
	ins, _, err := s.InsertStatic(ctx, []tokenizer.Mapping{again})
	require.NoError(t, err)
	assert.Equal(t, []bool{true}, ins, "the value can be tokenized again")
}

func testConcurrentStatic(t *testing.T, s Store) {
	ctx := t.Context()
	fp := random(16)
	const writers = 8
	var wg sync.WaitGroup
	wins := make([]bool, writers)
	errsSeen := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := mapping("ssn", true)
			m.Fingerprint = fp
			ins, _, err := s.InsertStatic(ctx, []tokenizer.Mapping{m})
			errsSeen[i] = err
			wins[i] = err == nil && ins[0]
		}()
	}
	wg.Wait()
	n := 0
	for i := range writers {
		require.NoError(t, errsSeen[i])
		if wins[i] {
			n++
		}
	}
	assert.Equal(t, 1, n, "exactly one writer holds a value's fingerprint")
}

func testReencrypt(t *testing.T, s Store) {
	ctx := t.Context()
	var ms []tokenizer.Mapping
	for i := range 5 {
		m := mapping("ssn", i%2 == 0)
		m.KeyVersion = 1 + i/3 // three at v1, two at v2
		ms = append(ms, m)
	}
	_, err := s.InsertMappings(ctx, ms)
	require.NoError(t, err)
	counts, err := s.CountByKeyVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[int]int64{1: 3, 2: 2}, counts)

	fail := errors.New("cannot re-encrypt")
	_, err = s.Reencrypt(ctx, 3, 10, func(m *tokenizer.Mapping) error { return fail })
	require.ErrorIs(t, err, fail)
	counts, err = s.CountByKeyVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[int]int64{1: 3, 2: 2}, counts, "a failed batch changes nothing")

	total := 0
	for {
		n, err := s.Reencrypt(ctx, 3, 2, func(m *tokenizer.Mapping) error {
			m.ValueCT, m.KeyVersion = append([]byte("v3:"), m.ValueCT...), 3
			return nil
		})
		require.NoError(t, err)
		require.LessOrEqual(t, n, 2, "at most limit rows per call")
		if n == 0 {
			break
		}
		total += n
	}
	assert.Equal(t, 5, total)
	found, err := s.LookupTokens(ctx, []tokenizer.Ref{ref(ms[0])})
	require.NoError(t, err)
	assert.Equal(t, append([]byte("v3:"), ms[0].ValueCT...), found[ref(ms[0]).Key()].ValueCT)
}

func testDataKeys(t *testing.T, s Store) {
	ctx := t.Context()
	for _, k := range []keys.WrappedKey{
		{Purpose: keys.TokenDigest, Version: 1, Provider: "local", Wrapped: []byte("w-td-1")},
		{Purpose: keys.ValueEncryption, Version: 2, Provider: "local", Wrapped: []byte("w-ve-2")},
		{Purpose: keys.ValueEncryption, Version: 1, Provider: "local", Wrapped: []byte("w-ve-1")},
	} {
		ok, err := s.InsertDataKey(ctx, k)
		require.NoError(t, err)
		assert.True(t, ok)
	}
	ok, err := s.InsertDataKey(ctx, keys.WrappedKey{Purpose: keys.ValueEncryption, Version: 1, Provider: "local", Wrapped: []byte("other")})
	require.NoError(t, err)
	assert.False(t, ok, "a purpose and version are stored once")
	got, err := s.DataKeys(ctx)
	require.NoError(t, err)
	var order []string
	for _, k := range got {
		order = append(order, fmt.Sprintf("%s/%d/%s", k.Purpose, k.Version, k.Wrapped))
		assert.False(t, k.CreatedAt.IsZero())
	}
	assert.Equal(t, []string{"token-digest/1/w-td-1", "value-encryption/1/w-ve-1", "value-encryption/2/w-ve-2"}, order)

	require.NoError(t, s.ReplaceWrapped(ctx, keys.ValueEncryption, 1, []byte("w-ve-1"), []byte("rewrapped")))
	err = s.ReplaceWrapped(ctx, keys.ValueEncryption, 1, []byte("w-ve-1"), []byte("again"))
	assert.ErrorIs(t, err, errs.ErrConflict, "a stale wrapped form is a conflict")
}

// appendRows appends n events chained onto the head; digests are given per event.
func appendRows(t *testing.T, s Store, at time.Time, digests ...[][]byte) {
	t.Helper()
	require.NoError(t, s.AppendAudit(t.Context(), func(headSeq int64, headHash []byte) ([]audit.Row, error) {
		prev := headHash
		if headSeq == 0 {
			prev = audit.GenesisHash
		}
		rows := make([]audit.Row, len(digests))
		for i, d := range digests {
			body := fmt.Sprintf(`{"n":%d}`, headSeq+int64(i)+1)
			h := audit.Hash(prev, []byte(body))
			rows[i] = audit.Row{Seq: headSeq + int64(i) + 1, PrevHash: prev, Hash: h, Body: body, Time: at, Operation: "detokenize", Caller: "c", TokenDigests: d}
			prev = h
		}
		return rows, nil
	}))
}

func testAuditAppend(t *testing.T, s Store) {
	ctx := t.Context()
	seq, hash, err := s.AuditHead(ctx)
	require.NoError(t, err)
	assert.Zero(t, seq)
	assert.Nil(t, hash)
	now := time.Now().UTC().Truncate(time.Microsecond)
	appendRows(t, s, now, nil, nil)
	appendRows(t, s, now, nil)
	seq, hash, err = s.AuditHead(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(3), seq)
	var rows []audit.Row
	require.NoError(t, s.ReadAudit(ctx, 2, 0, func(r audit.Row) error { rows = append(rows, r); return nil }))
	require.Len(t, rows, 2)
	assert.Equal(t, int64(2), rows[0].Seq)
	assert.Equal(t, rows[0].Hash, rows[1].PrevHash, "each batch chains onto the head")
	assert.Equal(t, hash, rows[1].Hash)
	assert.True(t, now.Equal(rows[0].Time))
	rows = nil
	require.NoError(t, s.ReadAudit(ctx, 1, 1, func(r audit.Row) error { rows = append(rows, r); return nil }))
	require.Len(t, rows, 1)
	assert.Equal(t, `{"n":1}`, rows[0].Body)
}

func testAuditBuildError(t *testing.T, s Store) {
	boom := errors.New("build failed")
	err := s.AppendAudit(t.Context(), func(int64, []byte) ([]audit.Row, error) { return nil, boom })
	require.ErrorIs(t, err, boom)
	seq, _, err := s.AuditHead(t.Context())
	require.NoError(t, err)
	assert.Zero(t, seq)
}

func testCheckpoints(t *testing.T, s Store) {
	ctx := t.Context()
	last, err := s.LastCheckpointSeq(ctx)
	require.NoError(t, err)
	assert.Zero(t, last)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	for _, c := range []audit.Checkpoint{
		{Seq: 5, Hash: random(32), Time: t0, Signature: "sig-5"},
		{Seq: 2, Hash: random(32), Time: t0, Signature: "sig-2"},
		{Seq: 5, Hash: random(32), Time: t0, Signature: "sig-5"}, // the same checkpoint again: kept once
	} {
		require.NoError(t, s.InsertCheckpoint(ctx, c))
	}
	all, err := s.Checkpoints(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, int64(2), all[0].Seq, "ordered by seq")
	some, err := s.Checkpoints(ctx, 3, 10)
	require.NoError(t, err)
	require.Len(t, some, 1)
	assert.Equal(t, "sig-5", some[0].Signature)
	last, err = s.LastCheckpointSeq(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(5), last)
}

func testDisclosures(t *testing.T, s Store) {
	ctx := t.Context()
	d1, d2, d3 := random(16), random(16), random(16)
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(48 * time.Hour)
	appendRows(t, s, t1, [][]byte{d1}, [][]byte{d2, d3})
	appendRows(t, s, t2, [][]byte{d1, d2}, nil)
	seqs := func(digests [][]byte, start, end time.Time) []int64 {
		rows, err := s.Disclosures(ctx, digests, start, end)
		require.NoError(t, err)
		var out []int64
		for _, r := range rows {
			out = append(out, r.Seq)
		}
		return out
	}
	assert.Equal(t, []int64{1, 3}, seqs([][]byte{d1}, time.Time{}, time.Time{}))
	assert.Equal(t, []int64{2, 3}, seqs([][]byte{d2}, time.Time{}, time.Time{}))
	assert.Equal(t, []int64{1, 2}, seqs([][]byte{d1, d3}, time.Time{}, t2), "end is exclusive")
	assert.Equal(t, []int64{3}, seqs([][]byte{d1, d3}, t2, time.Time{}), "start is inclusive")
	assert.Empty(t, seqs([][]byte{random(16)}, time.Time{}, time.Time{}))
}

func testCanceled(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.LookupTokens(ctx, []tokenizer.Ref{{Class: "ssn", Digest: random(16)}})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled, "the caller's cancellation is not an outage")
	assert.False(t, errors.Is(err, errs.ErrUnavailable))
}

func testOffsets(t *testing.T, s Store) {
	ctx := t.Context()
	a, b := random(16), random(16)
	got, err := s.LoadOffsets(ctx, [][]byte{a, b})
	require.NoError(t, err)
	assert.Empty(t, got)
	require.NoError(t, s.InsertOffsets(ctx, []tokenizer.Offset{{SubjectDigest: a, CT: []byte("first"), KeyVersion: 1}}))
	require.NoError(t, s.InsertOffsets(ctx, []tokenizer.Offset{
		{SubjectDigest: a, CT: []byte("second"), KeyVersion: 2},
		{SubjectDigest: b, CT: []byte("b"), KeyVersion: 1},
	}))
	got, err = s.LoadOffsets(ctx, [][]byte{a, b, random(16)})
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, []byte("first"), got[string(a)].CT, "the first writer wins")
	assert.Equal(t, 1, got[string(a)].KeyVersion)
	assert.Equal(t, []byte("b"), got[string(b)].CT)
}

func testSubjectOffsets(t *testing.T, s Store) {
	ctx := t.Context()
	a, b := insertSubject(t, s), insertSubject(t, s)
	da, db, dn := random(16), random(16), random(16)
	require.NoError(t, s.InsertOffsets(ctx, []tokenizer.Offset{
		{SubjectDigest: da, CT: []byte("a"), SubjectID: a.ID},
		{SubjectDigest: db, CT: []byte("b"), SubjectID: b.ID},
		{SubjectDigest: dn, CT: []byte("n"), KeyVersion: 1},
	}))
	got, err := s.LoadOffsets(ctx, [][]byte{da, db, dn})
	require.NoError(t, err)
	require.Len(t, got, 3)
	assert.Equal(t, a.ID, got[string(da)].SubjectID)
	assert.Zero(t, got[string(da)].KeyVersion)
	assert.Zero(t, got[string(dn)].SubjectID)

	_, err = s.ForgetSubject(ctx, a.ID)
	require.NoError(t, err)
	got, err = s.LoadOffsets(ctx, [][]byte{da, db, dn})
	require.NoError(t, err)
	assert.NotContains(t, got, string(da), "an erased subject's offset goes with it")
	assert.Contains(t, got, string(db), "another subject's offset stays")
	assert.Contains(t, got, string(dn), "an offset of no subject stays")
}
