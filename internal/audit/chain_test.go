package audit_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
)

func TestWriterChainsEvents(t *testing.T) {
	t.Parallel()
	st := &memChain{}
	evs := appendEvents(t, st, 5)
	require.Len(t, st.rows, 5)
	prev := audit.GenesisHash
	for i, r := range st.rows {
		ev := evs[i]
		assert.Equal(t, int64(i+1), ev.Seq, "Append sets the event's seq")
		assert.Equal(t, ev.Seq, r.Seq)
		assert.Equal(t, prev, r.PrevHash, "prev_hash is the previous hash (zeros for the first)")
		assert.Equal(t, string(ev.Canonical()), r.Body, "the body is the canonical encoding")
		assert.Equal(t, audit.Hash(prev, []byte(r.Body)), r.Hash)
		assert.Equal(t, ev.Operation, r.Operation)
		assert.Equal(t, ev.Caller, r.Caller)
		assert.True(t, ev.Time.Equal(r.Time))
		prev = r.Hash
	}
}

func TestWriterConcurrentAppendsFormOneChain(t *testing.T) {
	t.Parallel()
	st := &memChain{}
	w := audit.NewWriter(st, quiet, 5*time.Second)
	const n = 64
	var wg sync.WaitGroup
	seqs := make([]int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := event(i)
			assert.NoError(t, w.Append(context.Background(), ev))
			seqs[i] = ev.Seq
		}()
	}
	wg.Wait()
	w.Close()
	assert.Equal(t, int64(n), w.Appended())
	seen := map[int64]bool{}
	for _, s := range seqs {
		assert.False(t, seen[s], "seq %d given twice", s)
		assert.True(t, s >= 1 && s <= n, "seq %d out of range", s)
		seen[s] = true
	}
	res, err := audit.Verify(t.Context(), st, newSigner("k"), nil, 1, 0, nil)
	require.NoError(t, err)
	assert.True(t, res.OK, res.Reason)
	assert.Equal(t, int64(n), res.EventsChecked)
}

func TestWriterFailsClosed(t *testing.T) {
	t.Parallel()
	t.Run("store error", func(t *testing.T) {
		t.Parallel()
		st := &memChain{appendErr: errStore}
		w := audit.NewWriter(st, quiet, time.Second)
		defer w.Close()
		err := w.Append(t.Context(), event(0))
		require.Error(t, err)
		assert.ErrorIs(t, err, errs.ErrUnavailable)
		assert.ErrorIs(t, err, errStore, "the cause is kept for the logs")
		assert.Zero(t, w.Appended())

		st.mu.Lock()
		st.appendErr = nil
		st.mu.Unlock()
		ev := event(1)
		require.NoError(t, w.Append(t.Context(), ev))
		assert.Equal(t, int64(1), ev.Seq, "a failed batch takes no seq")
		assert.Equal(t, int64(1), w.Appended())
	})
	t.Run("commit timeout", func(t *testing.T) {
		t.Parallel()
		w := audit.NewWriter(&memChain{block: true}, quiet, 20*time.Millisecond)
		defer w.Close()
		err := w.Append(t.Context(), event(0))
		require.Error(t, err)
		assert.ErrorIs(t, err, errs.ErrUnavailable)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("after close", func(t *testing.T) {
		t.Parallel()
		w := audit.NewWriter(&memChain{}, quiet, time.Second)
		w.Close()
		for range 50 {
			err := w.Append(t.Context(), event(0))
			require.Error(t, err)
			assert.ErrorIs(t, err, errs.ErrUnavailable)
		}
	})
}

// verifyCase tampers with a chain of six events that has a stored checkpoint at seq 4,
// then verifies it.
type verifyCase struct {
	name     string
	tamper   func(t *testing.T, c *memChain, s *edSigner) []checkpoint // returns held checkpoints
	from, to int64
	ok       bool
	bad      int64
	reason   string
	events   int64
	cps      int64
	anchor   int64
}

func TestVerify(t *testing.T) {
	t.Parallel()
	other := newSigner("another key")
	tests := []verifyCase{
		{name: "intact", ok: true, events: 6, cps: 1},
		{name: "from below 1 means 1", from: -3, ok: true, events: 6, cps: 1},
		{name: "range with its checkpoint", from: 3, to: 5, ok: true, events: 3, cps: 1},
		{name: "range after the checkpoint", from: 5, ok: true, events: 2, cps: 0},
		{name: "held checkpoint at the head", ok: true, events: 6, cps: 2,
			tamper: func(t *testing.T, c *memChain, s *edSigner) []checkpoint {
				return []checkpoint{signedCheckpoint(t, s, 6, c.rows[5].Hash)}
			}},
		{name: "held checkpoint beyond the range is not required", to: 3, ok: true, events: 3, cps: 0,
			tamper: func(t *testing.T, c *memChain, s *edSigner) []checkpoint {
				return []checkpoint{signedCheckpoint(t, s, 6, c.rows[5].Hash)}
			}},
		{name: "modified body", bad: 3, reason: "hash does not match its content (modified)",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows[2].Body = strings.Replace(c.rows[2].Body, `"items":3`, `"items":4`, 1)
				return nil
			}},
		{name: "modified hash", bad: 3, reason: "(modified)",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows[2].Hash = bytes.Repeat([]byte{7}, 32)
				return nil
			}},
		{name: "deleted event", bad: 3, reason: "event 3 is missing (deleted), next stored event is 4",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows = append(c.rows[:2], c.rows[3:]...)
				return nil
			}},
		{name: "deleted first event", bad: 1, reason: "event 1 is missing (deleted)",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows = c.rows[1:]
				return nil
			}},
		{name: "reordered events", bad: 2, reason: "prev_hash does not link to event 1",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows[1].Seq, c.rows[2].Seq = 3, 2
				return nil
			}},
		{name: "body seq rewritten, chain recomputed", bad: 3, reason: "body does not carry seq 3",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows[2].Body = strings.Replace(c.rows[2].Body, `"seq":3`, `"seq":33`, 1)
				c.rehash(2)
				return nil
			}},
		{name: "history rewritten, chain recomputed", bad: 4, reason: "differs from the signed checkpoint (history rewritten)",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows[1].Body = strings.Replace(c.rows[1].Body, `"caller":"svc-b"`, `"caller":"svc-x"`, 1)
				c.rows[1].Caller = "svc-x" // a careful attacker edits the query column too
				c.rehash(1)
				return nil
			}},
		{name: "truncated tail", bad: 5, reason: "the chain ends at seq 4, but a signed checkpoint covers seq 6 (truncated)",
			tamper: func(t *testing.T, c *memChain, s *edSigner) []checkpoint {
				held := signedCheckpoint(t, s, 6, c.rows[5].Hash)
				c.rows = c.rows[:4]
				return []checkpoint{held}
			}},
		{name: "forged stored checkpoint", bad: 4, reason: "checkpoint at seq 4: signature does not verify",
			tamper: func(t *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.cps[0] = signedCheckpoint(t, other, 4, c.cps[0].Hash)
				return nil
			}},
		{name: "checkpoint altered after signing", bad: 4, reason: "signature does not verify",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.cps[0].Hash = c.rows[2].Hash
				return nil
			}},
		{name: "garbage signature", bad: 6, reason: "signature does not verify",
			tamper: func(t *testing.T, c *memChain, s *edSigner) []checkpoint {
				cp := signedCheckpoint(t, s, 6, c.rows[5].Hash)
				cp.Signature = "not base64!"
				return []checkpoint{cp}
			}},
		{name: "held checkpoint of another chain", bad: 5, reason: "differs from the signed checkpoint",
			tamper: func(t *testing.T, c *memChain, s *edSigner) []checkpoint {
				return []checkpoint{signedCheckpoint(t, s, 5, bytes.Repeat([]byte{1}, 32))}
			}},
		{name: "archived prefix, anchored at the checkpoint before it", ok: true, events: 2, cps: 0, anchor: 4,
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows = c.rows[4:]
				return nil
			}},
		{name: "archived prefix, anchored at a held checkpoint; held ones before it ignored", ok: true, events: 1, cps: 1, anchor: 5,
			tamper: func(t *testing.T, c *memChain, s *edSigner) []checkpoint {
				held := []checkpoint{signedCheckpoint(t, s, 2, c.rows[1].Hash), signedCheckpoint(t, s, 5, c.rows[4].Hash),
					signedCheckpoint(t, s, 6, c.rows[5].Hash)}
				c.rows = c.rows[5:]
				return held
			}},
		{name: "prefix deleted up to no checkpoint", bad: 1, reason: "event 1 is missing (deleted), next stored event is 4",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows = c.rows[3:]
				return nil
			}},
		{name: "anchored prefix, first event rewritten", bad: 5, reason: "prev_hash does not link to event 4",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows = c.rows[4:]
				c.rows[0].PrevHash = bytes.Repeat([]byte{3}, 32)
				return nil
			}},
		{name: "anchor checkpoint forged", bad: 5, reason: "signature does not verify",
			tamper: func(t *testing.T, c *memChain, _ *edSigner) []checkpoint {
				forged := signedCheckpoint(t, other, 5, c.rows[4].Hash)
				c.rows = c.rows[5:]
				return []checkpoint{forged}
			}},
		{name: "event before the range missing", from: 3, bad: 2, reason: "event 2, before the range, is missing",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows = append(c.rows[:1], c.rows[2:]...)
				return nil
			}},
		{name: "range start not linked", from: 3, bad: 3, reason: "prev_hash does not link to event 2",
			tamper: func(_ *testing.T, c *memChain, _ *edSigner) []checkpoint {
				c.rows[1].Hash = bytes.Repeat([]byte{9}, 32)
				return nil
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runVerifyCase(t, tt)
		})
	}
}

func runVerifyCase(t *testing.T, tt verifyCase) {
	t.Helper()
	s := newSigner("chain key")
	c := &memChain{}
	appendEvents(t, c, 4)
	cpr := &audit.Checkpointer{Store: c, Signer: s, Log: quiet}
	cp, err := cpr.Checkpoint(t.Context())
	require.NoError(t, err)
	require.NotNil(t, cp)
	appendEvents(t, c, 2)
	require.Len(t, c.rows, 6)
	var held []checkpoint
	if tt.tamper != nil {
		held = tt.tamper(t, c, s)
	}
	res, err := audit.Verify(t.Context(), c, s, nil, tt.from, tt.to, held)
	require.NoError(t, err)
	assert.Equal(t, tt.ok, res.OK, res.Reason)
	if !tt.ok {
		assert.Equal(t, tt.bad, res.FirstBadSeq)
		assert.Contains(t, res.Reason, tt.reason)
		return
	}
	assert.Empty(t, res.Reason)
	assert.Equal(t, tt.anchor, res.AnchorSeq)
	assert.Equal(t, tt.events, res.EventsChecked)
	assert.Equal(t, tt.cps, res.CheckpointsChecked)
	last := c.rows[len(c.rows)-1]
	if tt.to > 0 {
		last = c.rows[tt.to-1]
	}
	assert.Equal(t, last.Seq, res.HeadSeq)
	assert.Equal(t, last.Hash, res.HeadHash)
}

func TestVerifyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(c *memChain, s *edSigner)
		want  error
	}{
		{"store read fails", func(c *memChain, _ *edSigner) { c.readErr = errStore }, errStore},
		{"signer fails", func(_ *memChain, s *edSigner) { s.err = errStore }, errStore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSigner("k")
			c := &memChain{}
			appendEvents(t, c, 2)
			_, err := (&audit.Checkpointer{Store: c, Signer: s, Log: quiet}).Checkpoint(t.Context())
			require.NoError(t, err)
			tt.setup(c, s)
			_, err = audit.Verify(t.Context(), c, s, nil, 1, 0, nil)
			assert.ErrorIs(t, err, tt.want, "an error to verify is an error, not a verdict")
		})
	}
}

func TestCheckpointMessage(t *testing.T) {
	t.Parallel()
	hash, _ := hex.DecodeString("00ff10")
	got := audit.CheckpointMessage(1042, hash, time.Date(2026, 11, 21, 9, 0, 0, 6000, time.FixedZone("X", 3600)))
	assert.Equal(t, "tokenizer audit checkpoint v1\nseq=1042\nhash=00ff10\ntime=2026-11-21T08:00:00.000006Z\n", string(got))
}

// failWriter is a sink that cannot be written.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errStore }

func TestCheckpointer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("empty chain", func(t *testing.T) {
		t.Parallel()
		c := &memChain{}
		cp, err := (&audit.Checkpointer{Store: c, Signer: newSigner("k"), Log: quiet}).Checkpoint(ctx)
		require.NoError(t, err)
		assert.Nil(t, cp)
		assert.Empty(t, c.cps)
	})
	t.Run("signs the head, stores it and writes the sink", func(t *testing.T) {
		t.Parallel()
		c, s := &memChain{}, newSigner("k")
		appendEvents(t, c, 3)
		var sink bytes.Buffer
		cpr := &audit.Checkpointer{Store: c, Signer: s, Sink: &sink, Log: quiet}
		before := time.Now().UTC().Truncate(time.Microsecond)
		cp, err := cpr.Checkpoint(ctx)
		require.NoError(t, err)
		require.NotNil(t, cp)
		assert.Equal(t, int64(3), cp.Seq)
		assert.Equal(t, c.rows[2].Hash, cp.Hash)
		assert.False(t, cp.Time.Before(before))
		assert.Equal(t, cp.Time, cp.Time.Truncate(time.Microsecond), "time at microsecond precision, as written")
		ok, err := s.Verify(ctx, audit.CheckpointMessage(cp.Seq, cp.Hash, cp.Time), cp.Signature)
		require.NoError(t, err)
		assert.True(t, ok)
		assert.Equal(t, []checkpoint{*cp}, c.cps)

		var line audit.CheckpointLine
		require.NoError(t, json.Unmarshal(sink.Bytes(), &line))
		assert.Equal(t, audit.CheckpointLine{Seq: 3, Hash: hex.EncodeToString(cp.Hash),
			Time: cp.Time.Format(audit.TimeLayout), Signature: cp.Signature}, line)
		read, err := audit.ReadCheckpoints(bytes.NewReader(sink.Bytes()))
		require.NoError(t, err)
		require.Len(t, read, 1)
		assert.Equal(t, cp.Seq, read[0].Seq)
		assert.Equal(t, cp.Hash, read[0].Hash)
		assert.True(t, cp.Time.Equal(read[0].Time))

		again, err := cpr.Checkpoint(ctx)
		require.NoError(t, err)
		assert.Nil(t, again, "no new events, no new checkpoint")
		assert.Len(t, c.cps, 1)
	})
	t.Run("signer fails", func(t *testing.T) {
		t.Parallel()
		c, s := &memChain{}, newSigner("k")
		appendEvents(t, c, 1)
		s.err = errStore
		_, err := (&audit.Checkpointer{Store: c, Signer: s, Log: quiet}).Checkpoint(ctx)
		assert.ErrorIs(t, err, errStore)
		assert.Empty(t, c.cps, "nothing stored without a signature")
	})
	t.Run("sink fails", func(t *testing.T) {
		t.Parallel()
		c := &memChain{}
		appendEvents(t, c, 1)
		cp, err := (&audit.Checkpointer{Store: c, Signer: newSigner("k"), Sink: failWriter{}, Log: quiet}).Checkpoint(ctx)
		require.ErrorIs(t, err, errStore)
		assert.Contains(t, err.Error(), "write checkpoint sink")
		assert.NotNil(t, cp, "the stored checkpoint is still returned")
		assert.Len(t, c.cps, 1)
	})
	t.Run("run signs after every N events", func(t *testing.T) {
		t.Parallel()
		c, s := &memChain{}, newSigner("k")
		w := audit.NewWriter(c, quiet, time.Second)
		defer w.Close()
		require.NoError(t, w.Append(ctx, event(0)))
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cpr := &audit.Checkpointer{Store: c, Signer: s, Log: quiet, Every: 1, Interval: time.Hour, Appended: w.Appended}
		go cpr.Run(rctx)
		require.Eventually(t, func() bool { n, _ := c.LastCheckpointSeq(ctx); return n == 1 }, 10*time.Second, 20*time.Millisecond)
	})
}

func TestReadCheckpoints(t *testing.T) {
	t.Parallel()
	good := `{"seq":4,"hash":"00ff","time":"2026-11-21T08:00:00.000001Z","signature":"vault:v1:abc"}`
	tests := []struct {
		name  string
		in    string
		n     int
		error string
	}{
		{"one", good + "\n", 1, ""},
		{"blank lines skipped", "\n" + good + "\n  \n" + good, 2, ""},
		{"empty", "", 0, ""},
		{"not JSON", good + "\n{seq:1}\n", 0, "checkpoint line 2: not JSON"},
		{"hash not hex", `{"seq":1,"hash":"zz","time":"2026-11-21T08:00:00.000001Z"}`, 0, "checkpoint line 1: hash is not hex"},
		{"time without microseconds", `{"seq":1,"hash":"00","time":"2026-11-21T08:00:00Z"}`, 0, "checkpoint line 1: time is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cps, err := audit.ReadCheckpoints(strings.NewReader(tt.in))
			if tt.error != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.error)
				return
			}
			require.NoError(t, err)
			require.Len(t, cps, tt.n)
			for _, c := range cps {
				assert.Equal(t, checkpoint{Seq: 4, Hash: []byte{0, 0xff}, Time: time.Date(2026, 11, 21, 8, 0, 0, 1000, time.UTC),
					Signature: "vault:v1:abc"}, c)
			}
		})
	}
}
