package audit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
)

// The row types of the chain interfaces.
type (
	auditRow   = audit.Row
	checkpoint = audit.Checkpoint
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// memChain is an in-memory chain: the audit interfaces (ChainStore, ChainReader,
// CheckpointStore) over a slice, so the chain logic is tested without a database.
type memChain struct {
	mu        sync.Mutex
	rows      []auditRow
	cps       []checkpoint
	appendErr error
	readErr   error
	block     bool // AppendAudit waits until its context ends
}

func (m *memChain) AppendAudit(ctx context.Context, build func(int64, []byte) ([]auditRow, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.block {
		<-ctx.Done()
		return ctx.Err()
	}
	if m.appendErr != nil {
		return m.appendErr
	}
	var seq int64
	var hash []byte
	if n := len(m.rows); n > 0 {
		seq, hash = m.rows[n-1].Seq, m.rows[n-1].Hash
	}
	rows, err := build(seq, hash)
	if err != nil {
		return err
	}
	m.rows = append(m.rows, rows...)
	return nil
}

func (m *memChain) AuditHead(context.Context) (int64, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rows) == 0 {
		return 0, nil, nil
	}
	last := m.rows[len(m.rows)-1]
	return last.Seq, last.Hash, nil
}

func inRange(seq, from, to int64) bool { return seq >= from && (to <= 0 || seq <= to) }

func (m *memChain) ReadAudit(_ context.Context, from, to int64, fn func(auditRow) error) error {
	m.mu.Lock()
	rows := slices.Clone(m.rows)
	err := m.readErr
	m.mu.Unlock()
	if err != nil {
		return err
	}
	slices.SortStableFunc(rows, func(a, b auditRow) int { return int(a.Seq - b.Seq) })
	for _, r := range rows {
		if inRange(r.Seq, from, to) {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memChain) Checkpoints(_ context.Context, from, to int64) ([]checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []checkpoint
	for _, c := range m.cps {
		if inRange(c.Seq, from, to) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (m *memChain) InsertCheckpoint(_ context.Context, c checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cps = append(m.cps, c)
	return nil
}

func (m *memChain) LastCheckpointSeq(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var last int64
	for _, c := range m.cps {
		last = max(last, c.Seq)
	}
	return last, nil
}

// rehash recomputes prev_hash and hash from index i on, as an attacker with write
// access to the table would.
func (m *memChain) rehash(i int) {
	for ; i < len(m.rows); i++ {
		prev := audit.GenesisHash
		if i > 0 {
			prev = m.rows[i-1].Hash
		}
		m.rows[i].PrevHash = prev
		m.rows[i].Hash = audit.Hash(prev, []byte(m.rows[i].Body))
	}
}

// edSigner signs checkpoints with an in-test ed25519 key.
type edSigner struct {
	priv ed25519.PrivateKey
	err  error
}

func newSigner(seed string) *edSigner {
	s := sha256.Sum256([]byte(seed))
	return &edSigner{priv: ed25519.NewKeyFromSeed(s[:])}
}

func (s *edSigner) Sign(_ context.Context, msg []byte) (string, error) {
	if s.err != nil {
		return "", s.err
	}
	return base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg)), nil
}

func (s *edSigner) Verify(_ context.Context, msg []byte, sig string) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return false, nil
	}
	return ed25519.Verify(s.priv.Public().(ed25519.PublicKey), msg, raw), nil
}

// event is the i-th sample event (no seq: the writer assigns it).
func event(i int) *audit.Event {
	return &audit.Event{
		Time:      time.Date(2026, 11, 21, 8, 0, i, 0, time.UTC),
		RequestID: "req-" + string(rune('a'+i%26)),
		Caller:    "svc-" + string(rune('a'+i%3)),
		Operation: []string{"tokenize", "detokenize", "delete_tokens"}[i%3],
		Classes:   []string{"ssn"},
		Items:     1 + i%4,
		Outcome:   "OK",
	}
}

// appendEvents writes n sample events through a real Writer.
func appendEvents(t *testing.T, st *memChain, n int) []*audit.Event {
	t.Helper()
	w := audit.NewWriter(st, quiet, 5*time.Second)
	defer w.Close()
	out := make([]*audit.Event, n)
	for i := range out {
		out[i] = event(i)
		require.NoError(t, w.Append(t.Context(), out[i]))
	}
	return out
}

// signedCheckpoint is a checkpoint over seq with the given hash, signed by s.
func signedCheckpoint(t *testing.T, s *edSigner, seq int64, hash []byte) checkpoint {
	t.Helper()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	sig, err := s.Sign(t.Context(), audit.CheckpointMessage(seq, hash, now))
	require.NoError(t, err)
	return checkpoint{Seq: seq, Hash: hash, Time: now, Signature: sig}
}

var errStore = errors.New("store down")
