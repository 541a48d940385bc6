package tokenizer_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store/cache"
	"github.com/phivault/tokenizer/internal/store/memory"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// insertLog records the static mappings the engine asks the cache to insert (each a
// new mapping drawn and encrypted); it keeps the cache's other methods.
type insertLog struct {
	*cache.Store
	mu    sync.Mutex
	sizes []int
}

func (l *insertLog) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	l.mu.Lock()
	l.sizes = append(l.sizes, len(ms))
	l.mu.Unlock()
	return l.Store.InsertStatic(ctx, ms)
}

// A value whose mapping the cache holds is answered with its token before any new
// mapping is drawn for it: only the values not cached reach the store, and tokens stay
// one per value.
func TestCachedValuesDrawNoNewMapping(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mem := memory.New()
	st := &insertLog{Store: cache.New(mem, cache.Options{Entries: 100, TTL: time.Minute})}
	inner := st
	var classes []*tokenizer.Class
	for _, c := range config.DefaultClasses() {
		cl, err := tokenizer.Compile(c)
		require.NoError(t, err)
		classes = append(classes, cl)
	}
	p, _, err := keys.OpenLocal(filepath.Join(t.TempDir(), "kek"))
	require.NoError(t, err)
	kr := keys.NewKeyring(p, mem)
	require.NoError(t, kr.Ensure(ctx, tokenizer.KeyPurposes(classes)...))
	e, err := tokenizer.New(classes, st, kr, tokenizer.Limits{MaxItems: 100, MaxValueBytes: 64})
	require.NoError(t, err)

	first, err := e.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}, {Class: "mrn", Value: "MRN-12345678"}}, 0)
	require.NoError(t, err)
	require.NoError(t, first[0].Err)
	assert.True(t, first[0].Created)
	assert.Equal(t, []int{2}, inner.sizes)

	again, err := e.Tokenize(ctx, []tokenizer.TokenizeItem{
		{Class: "ssn", Value: "123-45-6789"},
		{Class: "ssn", Value: "234-56-7890"},
		{Class: "mrn", Value: "MRN-12345678"},
	}, 0)
	require.NoError(t, err)
	for _, r := range again {
		require.NoError(t, r.Err)
	}
	assert.Equal(t, []int{2, 1}, inner.sizes, "a new mapping was drawn only for the value not cached")
	assert.False(t, again[0].Created)
	assert.Equal(t, first[0].Token, again[0].Token, "the cached token")
	assert.Equal(t, first[1].Token, again[2].Token)
	assert.True(t, again[1].Created)
	hits, _ := st.Stats()
	assert.Equal(t, int64(2), hits)

	// A deleted token's value is not answered from the cache: it gets a new mapping.
	_, err = e.DeleteTokens(ctx, []tokenizer.DeleteItem{{Class: "mrn", Token: first[1].Token}})
	require.NoError(t, err)
	third, err := e.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "mrn", Value: "MRN-12345678"}}, 0)
	require.NoError(t, err)
	require.NoError(t, third[0].Err)
	assert.True(t, third[0].Created)
	assert.Equal(t, []int{2, 1, 1}, inner.sizes)
}
