package tokenizer_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/store/coalesce"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// coalescedPG is PostgreSQL with coalescing in front of the token methods the engine
// uses (the keys go straight to the store).
type coalescedPG struct {
	*store.Store
	c *coalesce.Store
}

func (x coalescedPG) InsertMappings(ctx context.Context, ms []tokenizer.Mapping) ([]bool, error) {
	return x.c.InsertMappings(ctx, ms)
}
func (x coalescedPG) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	return x.c.InsertStatic(ctx, ms)
}
func (x coalescedPG) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	return x.c.LookupTokens(ctx, refs)
}
func (x coalescedPG) LookupFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (map[string]tokenizer.Mapping, error) {
	return x.c.LookupFingerprints(ctx, refs)
}

// round runs one tokenize-then-detokenize request per caller, all at once, and
// returns each caller's token per class.
func round(t *testing.T, e *tokenizer.Engine, values []string, classes []string) []map[string]string {
	t.Helper()
	out := make([]map[string]string, len(values))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, v := range values {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			items := make([]tokenizer.TokenizeItem, len(classes))
			for k, c := range classes {
				items[k] = tokenizer.TokenizeItem{Class: c, Value: v}
			}
			res, err := e.Tokenize(t.Context(), items, 0)
			if !assert.NoError(t, err) {
				return
			}
			out[i] = map[string]string{}
			det := make([]tokenizer.DetokenizeItem, len(classes))
			for k, r := range res {
				if !assert.NoError(t, r.Err, "caller %d class %s", i, classes[k]) {
					return
				}
				out[i][classes[k]] = r.Token
				det[k] = tokenizer.DetokenizeItem{Class: classes[k], Token: r.Token}
			}
			back, err := e.Detokenize(t.Context(), det)
			if !assert.NoError(t, err) {
				return
			}
			for k, r := range back {
				assert.NoError(t, r.Err)
				assert.Equal(t, v, r.Value, "caller %d class %s gets its own value back", i, classes[k])
			}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func TestCoalescedEngineKeepsEachRequestsResults(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(t.Context(), dbURL, store.Options{MaxConns: 8, ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(t.Context())
	require.NoError(t, err)
	c := coalesce.New(st, coalesce.Options{Window: 5 * time.Millisecond, MaxItems: 256})
	e := engineOn(t, coalescedPG{Store: st, c: c})
	classes := []string{"ssn", "ssn_fpe", "ssn_dynamic"}

	// 24 callers at once: four share each of three values, the others have their own.
	static := map[string]string{} // value → its static token, across rounds
	for r := 0; r < 20 && (r < 2 || c.Merged() == 0); r++ {
		var values []string
		for i := range 24 {
			if i < 12 {
				values = append(values, fmt.Sprintf("123-45-%04d", 6000+r*10+i%3))
			} else {
				values = append(values, fmt.Sprintf("123-46-%04d", r*100+i))
			}
		}
		got := round(t, e, values, classes)
		dynamic := map[string]bool{}
		for i, v := range values {
			require.NotNil(t, got[i], "caller %d", i)
			for _, cl := range []string{"ssn", "ssn_fpe"} {
				k := cl + "\x00" + v
				if prev, ok := static[k]; ok {
					assert.Equal(t, prev, got[i][cl], "the same value has one static token (class %s)", cl)
				}
				static[k] = got[i][cl]
			}
			assert.False(t, dynamic[got[i]["ssn_dynamic"]], "a dynamic token is never handed out twice")
			dynamic[got[i]["ssn_dynamic"]] = true
		}
	}
	t.Logf("merged statements: %d", c.Merged())
	assert.Positive(t, c.Merged(), "concurrent requests shared statements")
	// One row per distinct static value and class: the same value in merged
	// requests did not make two mappings.
	n := pgtest.Count(t, dbURL, "SELECT count(*) FROM tokens WHERE class = 'ssn'")
	assert.Equal(t, int64(len(static)/2), n)
}

// heldPG holds its first InsertStatic until release closes, so that the requests
// made meanwhile share the next statement.
type heldPG struct {
	*store.Store
	first, release chan struct{}
	once           sync.Once
}

func (h *heldPG) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	hold := false
	h.once.Do(func() { hold = true })
	if hold {
		close(h.first)
		<-h.release
	}
	return h.Store.InsertStatic(ctx, ms)
}

func TestSameValueInMergedRequestsGetsOneStaticToken(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(t.Context(), dbURL, store.Options{MaxConns: 8, ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(t.Context())
	require.NoError(t, err)
	h := &heldPG{Store: st, first: make(chan struct{}), release: make(chan struct{})}
	c := coalesce.New(h, coalesce.Options{Window: time.Minute, MaxItems: 256})
	e := engineOn(t, coalescedPG{Store: st, c: c})
	tokenize := func(v, mrn string, n int) []chan string {
		var out []chan string
		for range n {
			ch := make(chan string, 1)
			out = append(out, ch)
			go func() {
				res, err := e.Tokenize(t.Context(), []tokenizer.TokenizeItem{{Class: "ssn", Value: v}, {Class: "mrn", Value: mrn}}, 0)
				if assert.NoError(t, err) && assert.NoError(t, res[0].Err) && assert.NoError(t, res[1].Err) {
					ch <- res[0].Token + " " + res[1].Token
					return
				}
				ch <- ""
			}()
		}
		return out
	}
	first := tokenize("234-56-7890", "MRN-00000041", 1)
	<-h.first
	same := tokenize("123-45-6789", "MRN-00000042", 3)
	require.Eventually(t, func() bool { return c.Queued() == 3 }, 10*time.Second, time.Millisecond, "the three queue behind the held statement")
	close(h.release)
	<-first[0]
	a := <-same[0]
	require.NotEmpty(t, a)
	for _, ch := range same[1:] {
		assert.Equal(t, a, <-ch, "one static token per value across merged requests")
	}
	assert.Positive(t, c.Merged())
	assert.Equal(t, int64(2), pgtest.Count(t, dbURL, "SELECT count(*) FROM tokens WHERE class = 'ssn'"))
	assert.Equal(t, int64(2), pgtest.Count(t, dbURL, "SELECT count(*) FROM tokens WHERE class = 'mrn'"))
}

func TestRequestThatTimesOutWhileQueuedGetsItsDeadline(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(t.Context(), dbURL, store.Options{MaxConns: 8, ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(t.Context())
	require.NoError(t, err)
	h := &heldPG{Store: st, first: make(chan struct{}), release: make(chan struct{})}
	c := coalesce.New(h, coalesce.Options{Window: time.Minute, MaxItems: 256})
	e := engineOn(t, coalescedPG{Store: st, c: c})
	held := make(chan error, 1)
	go func() {
		_, err := e.Tokenize(t.Context(), []tokenizer.TokenizeItem{{Class: "ssn", Value: "234-56-7890"}}, 0)
		held <- err
	}()
	<-h.first
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, err = e.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}, 0)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, context.DeadlineExceeded, err, "the context's own error, not a token-vault error")
	close(h.release)
	require.NoError(t, <-held)
	assert.Equal(t, int64(1), pgtest.Count(t, dbURL, "SELECT count(*) FROM tokens WHERE class = 'ssn'"), "the request that left wrote nothing")
}
