package coalesce_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/store/coalesce"
	"github.com/phivault/tokenizer/internal/store/memory"
	"github.com/phivault/tokenizer/internal/store/storetest"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// coalesced is the PostgreSQL store with coalescing in front of its token methods: the
// decorator must keep every promise of the conformance suite.
type coalesced struct {
	*store.Store
	c *coalesce.Store
}

func (x coalesced) InsertMappings(ctx context.Context, ms []tokenizer.Mapping) ([]bool, error) {
	return x.c.InsertMappings(ctx, ms)
}
func (x coalesced) InsertStatic(ctx context.Context, ms []tokenizer.Mapping) ([]bool, map[string]tokenizer.Mapping, error) {
	return x.c.InsertStatic(ctx, ms)
}
func (x coalesced) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	return x.c.LookupTokens(ctx, refs)
}
func (x coalesced) LookupFingerprints(ctx context.Context, refs []tokenizer.FingerprintRef) (map[string]tokenizer.Mapping, error) {
	return x.c.LookupFingerprints(ctx, refs)
}
func (x coalesced) Reencrypt(ctx context.Context, current, limit int, fn func(m *tokenizer.Mapping) error) (int, error) {
	return x.c.Reencrypt(ctx, current, limit, fn)
}
func (x coalesced) ForgetSubject(ctx context.Context, id int64) (map[string]int64, error) {
	return x.c.ForgetSubject(ctx, id)
}

func openPG(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{MaxConns: 8})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(t.Context())
	require.NoError(t, err)
	return st
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		st := openPG(t)
		return coalesced{Store: st, c: coalesce.New(st, coalesce.Options{Window: 2 * time.Millisecond, MaxItems: 64})}
	})
}

// gated is an inner store whose first LookupTokens call waits for release, so that
// the calls made meanwhile queue for one merged statement; it records what reaches it.
type gated struct {
	*memory.Store
	first   chan struct{} // closed when the first call has arrived
	release chan struct{}
	fail    func(refs []tokenizer.Ref) error

	mu    sync.Mutex
	calls [][]tokenizer.Ref
	once  sync.Once
}

func newGated() *gated {
	return &gated{Store: memory.New(), first: make(chan struct{}), release: make(chan struct{})}
}

func (g *gated) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	g.mu.Lock()
	g.calls = append(g.calls, refs)
	g.mu.Unlock()
	wait := false
	g.once.Do(func() { wait = true })
	if wait {
		close(g.first)
		<-g.release
	}
	if g.fail != nil {
		if err := g.fail(refs); err != nil {
			return nil, err
		}
	}
	return g.Store.LookupTokens(ctx, refs)
}

func (g *gated) callSizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []int
	for _, c := range g.calls {
		out = append(out, len(c))
	}
	return out
}

// mapping is a dynamic row of class c whose digest names i.
func mapping(c string, i int) tokenizer.Mapping {
	return tokenizer.Mapping{Class: c, TokenDigest: fmt.Appendf(nil, "digest-%04d", i), DigestVersion: 1, ValueCT: fmt.Appendf(nil, "ct-%04d", i), KeyVersion: 1}
}

func ref(c string, i int) tokenizer.Ref {
	return tokenizer.Ref{Class: c, Digest: fmt.Appendf(nil, "digest-%04d", i)}
}

// holdFirst starts a lone call that occupies the operation until g.release closes.
func holdFirst(t *testing.T, s *coalesce.Store, g *gated) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := s.LookupTokens(context.Background(), []tokenizer.Ref{ref("ssn", 9999)})
		done <- err
	}()
	<-g.first
	return done
}

// waitQueued waits until n calls wait for the next statement.
func waitQueued(t *testing.T, s *coalesce.Store, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Queued() == n }, 10*time.Second, time.Millisecond)
}

func TestConcurrentCallsShareOneStatementAndGetTheirOwnRows(t *testing.T) {
	t.Parallel()
	g := newGated()
	var ms []tokenizer.Mapping
	for i := range 20 {
		ms = append(ms, mapping("ssn", i))
	}
	_, err := g.Store.InsertMappings(t.Context(), ms)
	require.NoError(t, err)
	s := coalesce.New(g, coalesce.Options{Window: time.Minute, MaxItems: 1000})
	var observed [][2]int
	var omu sync.Mutex
	s.SetObserver(func(op string, calls, items int) {
		omu.Lock()
		defer omu.Unlock()
		assert.Equal(t, coalesce.OpLookupTokens, op)
		observed = append(observed, [2]int{calls, items})
	})
	first := holdFirst(t, s, g)

	// Ten callers, each asking for its own two rows and one that does not exist.
	results := make([]map[string]tokenizer.Mapping, 10)
	errsOut := make([]error, 10)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errsOut[i] = s.LookupTokens(t.Context(), []tokenizer.Ref{ref("ssn", 2*i), ref("ssn", 2*i+1), ref("ssn", 100+i)})
		}()
	}
	waitQueued(t, s, 10)
	assert.Equal(t, []int{1}, g.callSizes(), "the queued calls wait for the running one")
	close(g.release)
	wg.Wait()
	require.NoError(t, <-first)

	assert.Equal(t, []int{1, 30}, g.callSizes(), "the ten calls went as one statement")
	assert.Equal(t, int64(1), s.Merged())
	assert.Equal(t, [][2]int{{1, 1}, {10, 30}}, observed, "the lone first call, then the merged one")
	for i := range 10 {
		require.NoError(t, errsOut[i])
		assert.Len(t, results[i], 2, "caller %d gets its own rows and no one else's", i)
		for _, j := range []int{2 * i, 2*i + 1} {
			m, ok := results[i][ref("ssn", j).Key()]
			require.True(t, ok)
			assert.Equal(t, fmt.Appendf(nil, "ct-%04d", j), m.ValueCT)
		}
	}
}

func TestLoneCallGoesAtOnce(t *testing.T) {
	t.Parallel()
	g := newGated()
	close(g.release)
	s := coalesce.New(g, coalesce.Options{Window: time.Minute, MaxItems: 1000})
	start := time.Now()
	_, err := s.LookupTokens(t.Context(), []tokenizer.Ref{ref("ssn", 1)})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 30*time.Second, "no wait for a window when nothing else runs")
	assert.Equal(t, []int{1}, g.callSizes())
	assert.Zero(t, s.Merged())
}

func TestWindowBoundsTheWait(t *testing.T) {
	t.Parallel()
	g := newGated()
	s := coalesce.New(g, coalesce.Options{Window: 5 * time.Millisecond, MaxItems: 1000})
	first := holdFirst(t, s, g)
	// The first call never finishes while these wait: the window alone sends them.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.LookupTokens(t.Context(), []tokenizer.Ref{ref("ssn", i)})
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	close(g.release)
	require.NoError(t, <-first)
	sizes := g.callSizes()
	assert.Equal(t, 1, sizes[0])
	total := 0
	for _, n := range sizes[1:] {
		total += n
	}
	assert.Equal(t, 3, total)
}

func TestMaxItemsSendsAFullBatchAndBigCallsGoAlone(t *testing.T) {
	t.Parallel()
	g := newGated()
	s := coalesce.New(g, coalesce.Options{Window: time.Minute, MaxItems: 4})
	first := holdFirst(t, s, g)
	// Two calls of two items fill a batch of four: it goes without waiting.
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.LookupTokens(t.Context(), []tokenizer.Ref{ref("ssn", 2*i), ref("ssn", 2*i+1)})
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	// A call of MaxItems items or more never waits either.
	_, err := s.LookupTokens(t.Context(), []tokenizer.Ref{ref("ssn", 10), ref("ssn", 11), ref("ssn", 12), ref("ssn", 13), ref("ssn", 14)})
	require.NoError(t, err)
	close(g.release)
	require.NoError(t, <-first)
	assert.ElementsMatch(t, []int{1, 4, 5}, g.callSizes())
}

func TestCallerThatGivesUpWhileWaitingGetsItsContextError(t *testing.T) {
	t.Parallel()
	for name, mk := range map[string]func() (context.Context, context.CancelFunc){
		"canceled": func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
		"deadline": func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 10*time.Millisecond)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g := newGated()
			s := coalesce.New(g, coalesce.Options{Window: time.Minute, MaxItems: 1000})
			first := holdFirst(t, s, g)
			stay := make(chan error, 1)
			go func() {
				_, err := s.LookupTokens(t.Context(), []tokenizer.Ref{ref("ssn", 2)})
				stay <- err
			}()
			waitQueued(t, s, 1)
			ctx, cancel := mk()
			defer cancel()
			gone := make(chan error, 1)
			go func() {
				_, err := s.LookupTokens(ctx, []tokenizer.Ref{ref("ssn", 1)})
				gone <- err
			}()
			if name == "canceled" {
				waitQueued(t, s, 2)
				cancel()
			}
			err := <-gone
			assert.ErrorIs(t, err, ctx.Err())
			assert.False(t, errors.Is(err, errs.ErrUnavailable), "a context error, not a store error")
			close(g.release)
			require.NoError(t, <-first)
			require.NoError(t, <-stay)
			sizes := g.callSizes()
			assert.Equal(t, []int{1, 1}, sizes, "the caller that left took its items out of the statement")
		})
	}
}

func TestMergedFailure(t *testing.T) {
	t.Parallel()
	poison := ref("ssn", 666)
	conflict := fmt.Errorf("postgres: look up tokens failed (SQLSTATE 23503): %w", errs.ErrConflict)
	down := fmt.Errorf("postgres: look up tokens failed: %w", errs.ErrUnavailable)
	run := func(t *testing.T, failWith error) (errsOut []error, s *coalesce.Store, g *gated) {
		g = newGated()
		g.fail = func(refs []tokenizer.Ref) error {
			for _, r := range refs {
				if r.Key() == poison.Key() {
					return failWith
				}
			}
			return nil
		}
		_, err := g.Store.InsertMappings(t.Context(), []tokenizer.Mapping{mapping("ssn", 1), mapping("ssn", 2)})
		require.NoError(t, err)
		s = coalesce.New(g, coalesce.Options{Window: time.Minute, MaxItems: 1000})
		first := holdFirst(t, s, g)
		errsOut = make([]error, 3)
		var wg sync.WaitGroup
		for i, refs := range [][]tokenizer.Ref{{ref("ssn", 1)}, {poison}, {ref("ssn", 2)}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := s.LookupTokens(t.Context(), refs)
				if err == nil {
					assert.Len(t, got, 1, "caller %d gets its row", i)
				}
				errsOut[i] = err
			}()
		}
		waitQueued(t, s, 3)
		close(g.release)
		wg.Wait()
		require.NoError(t, <-first)
		return errsOut, s, g
	}
	t.Run("an error that may be one call's own: each call runs again alone", func(t *testing.T) {
		t.Parallel()
		errsOut, s, g := run(t, conflict)
		assert.NoError(t, errsOut[0])
		assert.ErrorIs(t, errsOut[1], errs.ErrConflict)
		assert.NoError(t, errsOut[2])
		assert.Equal(t, int64(1), s.Retried())
		assert.ElementsMatch(t, []int{1, 3, 1, 1, 1}, g.callSizes())
	})
	t.Run("an unreachable database: every call gets the same error", func(t *testing.T) {
		t.Parallel()
		errsOut, s, g := run(t, down)
		for _, err := range errsOut {
			assert.Equal(t, down, err)
		}
		assert.Zero(t, s.Retried())
		assert.ElementsMatch(t, []int{1, 3}, g.callSizes())
	})
}

func TestWindowZeroIsOff(t *testing.T) {
	t.Parallel()
	g := newGated()
	s := coalesce.New(g, coalesce.Options{Window: 0, MaxItems: 1000})
	first := holdFirst(t, s, g)
	// With coalescing off a second call goes straight to the store, even while the
	// first runs.
	_, err := s.LookupTokens(t.Context(), []tokenizer.Ref{ref("ssn", 1)})
	require.NoError(t, err)
	close(g.release)
	require.NoError(t, <-first)
	assert.Equal(t, []int{1, 1}, g.callSizes())
}

// panicky panics in LookupTokens once released, as a store bug would.
type panicky struct{ *gated }

func (p panicky) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	m, err := p.gated.LookupTokens(ctx, refs)
	if len(refs) > 1 {
		panic("store bug")
	}
	return m, err
}

func TestPanicInMergedStatementReachesEveryCaller(t *testing.T) {
	t.Parallel()
	g := newGated()
	s := coalesce.New(panicky{g}, coalesce.Options{Window: time.Minute, MaxItems: 1000})
	first := holdFirst(t, s, g)
	recovered := make(chan any, 2)
	for i := range 2 {
		go func() {
			defer func() { recovered <- recover() }()
			_, _ = s.LookupTokens(t.Context(), []tokenizer.Ref{ref("ssn", i)})
		}()
	}
	waitQueued(t, s, 2)
	close(g.release)
	require.NoError(t, <-first)
	for range 2 {
		assert.Equal(t, "store bug", <-recovered, "each caller panics in its own goroutine, where the server recovers")
	}
	// The group still works afterwards.
	_, err := s.LookupTokens(t.Context(), []tokenizer.Ref{ref("ssn", 3)})
	require.NoError(t, err)
}

// slowMerged makes merged lookups (more than one ref) take a while, honouring ctx.
type slowMerged struct{ *gated }

func (s slowMerged) LookupTokens(ctx context.Context, refs []tokenizer.Ref) (map[string]tokenizer.Mapping, error) {
	if len(refs) > 1 {
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil, fmt.Errorf("postgres: look up tokens failed: %w: %w", errs.ErrUnavailable, ctx.Err())
		}
	}
	return s.gated.LookupTokens(ctx, refs)
}

func TestOneCallerGivingUpDoesNotEndTheStatementForTheOthers(t *testing.T) {
	t.Parallel()
	g := newGated()
	_, err := g.Store.InsertMappings(t.Context(), []tokenizer.Mapping{mapping("ssn", 1), mapping("ssn", 2)})
	require.NoError(t, err)
	s := coalesce.New(slowMerged{g}, coalesce.Options{Window: time.Minute, MaxItems: 1000})
	first := holdFirst(t, s, g)
	short, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	long, cancelLong := context.WithTimeout(t.Context(), time.Hour)
	defer cancelLong()
	shortErr, longRes := make(chan error, 1), make(chan map[string]tokenizer.Mapping, 1)
	go func() {
		_, err := s.LookupTokens(short, []tokenizer.Ref{ref("ssn", 1)})
		shortErr <- err
	}()
	go func() {
		got, err := s.LookupTokens(long, []tokenizer.Ref{ref("ssn", 2)})
		assert.NoError(t, err)
		longRes <- got
	}()
	waitQueued(t, s, 2)
	close(g.release)
	require.NoError(t, <-first)
	require.Eventually(t, func() bool { return s.Queued() == 0 }, 10*time.Second, time.Millisecond)
	cancel() // while the merged statement runs
	assert.ErrorIs(t, <-shortErr, context.Canceled)
	assert.Len(t, <-longRes, 1, "the statement went on for the caller still waiting")
}
