package cache_test

import (
	"context"
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/store/cache"
	"github.com/phivault/tokenizer/internal/store/memory"
	"github.com/phivault/tokenizer/internal/store/storetest"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// cached is the memory store with the cache in front of its token methods: the
// decorator must keep every promise of the conformance suite.
type cached struct {
	*memory.Store
	c *cache.Store
}

func (x cached) InsertMappings(ctx context.Context, ms []tokenizer.Mapping) ([]bool, error) {
	return x.c.InsertMappings(ctx, ms)
}
func (x cached) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	return x.c.InsertStatic(ctx, ms)
}
func (x cached) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	return x.c.LookupTokens(ctx, refs)
}
func (x cached) LookupFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (map[string]tokenizer.Mapping, error) {
	return x.c.LookupFingerprints(ctx, refs)
}
func (x cached) PurgeExpiredFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (int64, error) {
	return x.c.PurgeExpiredFingerprints(ctx, refs)
}
func (x cached) Reencrypt(ctx context.Context, current, limit int, fn func(m *tokenizer.Mapping) error) (int, error) {
	return x.c.Reencrypt(ctx, current, limit, fn)
}
func (x cached) ForgetSubject(ctx context.Context, id int64) (map[string]int64, error) {
	return x.c.ForgetSubject(ctx, id)
}
func (x cached) DeleteTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]bool, error) {
	return x.c.DeleteTokens(ctx, refs)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Store {
		m := memory.New()
		return cached{Store: m, c: cache.New(m, cache.Options{Entries: 1000, TTL: time.Minute})}
	})
}

// counting counts the calls that reach the inner store.
type counting struct {
	tokenizer.Store
	calls atomic.Int64
}

func (c *counting) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	c.calls.Add(1)
	return c.Store.LookupTokens(ctx, refs)
}

func (c *counting) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	c.calls.Add(1)
	return c.Store.InsertStatic(ctx, ms)
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func static() tokenizer.Mapping {
	return tokenizer.Mapping{Class: "ssn", TokenDigest: random(16), DigestVersion: 1, Fingerprint: random(16), FingerprintVersion: 1,
		ValueCT: random(40), TokenCT: random(30), KeyVersion: 1}
}

func TestSeenValuesAndTokensSkipTheStore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	inner := &counting{Store: memory.New()}
	c := cache.New(inner, cache.Options{Entries: 100, TTL: time.Minute})
	m := static()
	ins, _, err := c.InsertStatic(ctx, []tokenizer.Mapping{m})
	require.NoError(t, err)
	require.Equal(t, []bool{true}, ins)
	calls := inner.calls.Load()

	again := static()
	again.Fingerprint = m.Fingerprint
	ins, existing, err := c.InsertStatic(ctx, []tokenizer.Mapping{again})
	require.NoError(t, err)
	assert.Equal(t, []bool{false}, ins)
	assert.Equal(t, m.TokenDigest, existing[tokenizer.FingerprintRef{Class: "ssn", Fingerprint: m.Fingerprint}.Key()].TokenDigest)
	found, err := c.LookupTokens(ctx, []tokenizer.Ref{{Class: "ssn", Digest: m.TokenDigest}})
	require.NoError(t, err)
	assert.Len(t, found, 1)
	assert.Equal(t, calls, inner.calls.Load(), "a seen value and a seen token need no trip to the store")
	hits, misses := c.Stats()
	assert.Equal(t, int64(2), hits)
	assert.Equal(t, int64(1), misses)

	deleted, err := c.DeleteTokens(ctx, []tokenizer.Ref{{Class: "ssn", Digest: m.TokenDigest}})
	require.NoError(t, err)
	assert.Len(t, deleted, 1)
	found, err = c.LookupTokens(ctx, []tokenizer.Ref{{Class: "ssn", Digest: m.TokenDigest}})
	require.NoError(t, err)
	assert.Empty(t, found, "a deleted token is forgotten at once")
	assert.Zero(t, c.Len())
}

func TestExpiredMappingsAreNotAnswered(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := cache.New(memory.New(), cache.Options{Entries: 100, TTL: time.Minute})
	m := static()
	soon := time.Now().Add(150 * time.Millisecond)
	m.ExpiresAt = &soon
	_, _, err := c.InsertStatic(ctx, []tokenizer.Mapping{m})
	require.NoError(t, err)
	found, err := c.LookupTokens(ctx, []tokenizer.Ref{{Class: "ssn", Digest: m.TokenDigest}})
	require.NoError(t, err)
	require.Len(t, found, 1)
	time.Sleep(200 * time.Millisecond)
	found, err = c.LookupTokens(ctx, []tokenizer.Ref{{Class: "ssn", Digest: m.TokenDigest}})
	require.NoError(t, err)
	assert.Empty(t, found, "the mapping's own expiry holds in the cache")
}

func TestEntriesLiveAtMostTheirTTLAndTheCacheIsBounded(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	inner := &counting{Store: memory.New()}
	c := cache.New(inner, cache.Options{Entries: 10, TTL: 100 * time.Millisecond})
	var ms []tokenizer.Mapping
	for range 25 {
		ms = append(ms, static())
	}
	_, err := c.InsertMappings(ctx, ms)
	require.NoError(t, err)
	assert.LessOrEqual(t, c.Len(), 20, "at most Entries per index")
	ref := []tokenizer.Ref{{Class: "ssn", Digest: ms[24].TokenDigest}}
	_, err = c.LookupTokens(ctx, ref)
	require.NoError(t, err)
	before := inner.calls.Load()
	time.Sleep(150 * time.Millisecond)
	_, err = c.LookupTokens(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, before+1, inner.calls.Load(), "after its TTL an entry is read again from the store")
}

// feed is a test invalidation feed: it delivers what is sent, then ends.
type feed chan cache.Invalidation

func (f feed) ListenInvalidations(ctx context.Context, fn func(cache.Invalidation)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case inv, ok := <-f:
			if !ok {
				return nil
			}
			fn(inv)
		}
	}
}

func TestFollowAppliesInvalidationsAndFlushesOnLoss(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := cache.New(memory.New(), cache.Options{Entries: 100, TTL: time.Minute})
	a, b := static(), static()
	_, err := c.InsertMappings(ctx, []tokenizer.Mapping{a, b})
	require.NoError(t, err)
	f := make(feed)
	done := make(chan struct{})
	go func() {
		c.Follow(ctx, f, quietLog())
		close(done)
	}()
	f <- cache.Invalidation{Refs: []tokenizer.Ref{{Class: "ssn", Digest: a.TokenDigest}}}
	require.Eventually(t, func() bool { return c.Len() == 2 }, time.Second, 5*time.Millisecond, "a's two entries forgotten, b's kept")
	f <- cache.Invalidation{Flush: true}
	require.Eventually(t, func() bool { return c.Len() == 0 }, time.Second, 5*time.Millisecond)
	cancel()
	<-done
}
