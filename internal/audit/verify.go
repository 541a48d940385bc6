package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Signer signs and verifies checkpoints (keys.Signer: Vault Transit ed25519, or the
// development key).
type Signer interface {
	Sign(ctx context.Context, message []byte) (string, error)
	Verify(ctx context.Context, message []byte, signature string) (bool, error)
}

// CheckpointMessage is what a checkpoint signs.
func CheckpointMessage(seq int64, hash []byte, t time.Time) []byte {
	return fmt.Appendf(nil, "tokenizer audit checkpoint v1\nseq=%d\nhash=%x\ntime=%s\n", seq, hash, t.UTC().Format(TimeLayout))
}

// CheckpointLine is a checkpoint as written to the sink and read by `audit verify
// --checkpoint`: one JSON object per line.
type CheckpointLine struct {
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"`
	Time      string `json:"time"`
	Signature string `json:"signature"`
}

func lineOf(c Checkpoint) CheckpointLine {
	return CheckpointLine{Seq: c.Seq, Hash: hex.EncodeToString(c.Hash), Time: c.Time.UTC().Format(TimeLayout), Signature: c.Signature}
}

func (l CheckpointLine) checkpoint() (Checkpoint, error) {
	h, err := hex.DecodeString(l.Hash)
	if err != nil {
		return Checkpoint{}, errors.New("hash is not hex")
	}
	t, err := time.Parse(TimeLayout, l.Time)
	if err != nil {
		return Checkpoint{}, errors.New("time is not " + TimeLayout)
	}
	return Checkpoint{Seq: l.Seq, Hash: h, Time: t, Signature: l.Signature}, nil
}

// ReadCheckpoints reads checkpoint lines (a sink file).
func ReadCheckpoints(r io.Reader) ([]Checkpoint, error) {
	var out []Checkpoint
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var l CheckpointLine
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, fmt.Errorf("checkpoint line %d: not JSON", n)
		}
		c, err := l.checkpoint()
		if err != nil {
			return nil, fmt.Errorf("checkpoint line %d: %w", n, err)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// Checkpointer signs the chain head every Every events or Interval, whichever comes
// first, stores the checkpoint and writes it to the sink.
type Checkpointer struct {
	Store    CheckpointStore
	Signer   Signer
	Sink     io.Writer // a file or stdout; nil for none
	Every    int64
	Interval time.Duration
	Log      *slog.Logger
	// Appended counts events appended by this process (Writer.Appended).
	Appended func() int64

	mu sync.Mutex
}

// Run checkpoints until ctx ends.
func (c *Checkpointer) Run(ctx context.Context) {
	tick := time.NewTicker(min(c.Interval, time.Second))
	defer tick.Stop()
	last := time.Now()
	var lastCount int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := c.Appended()
		if n-lastCount < c.Every && time.Since(last) < c.Interval {
			continue
		}
		if _, err := c.Checkpoint(ctx); err != nil {
			c.Log.Warn("audit checkpoint failed", slog.String("error", err.Error()))
			continue
		}
		last, lastCount = time.Now(), n
	}
}

// Checkpoint signs the current head if it moved since the last checkpoint.
func (c *Checkpointer) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq, hash, err := c.Store.AuditHead(ctx)
	if err != nil || seq == 0 {
		return nil, err
	}
	lastSeq, err := c.Store.LastCheckpointSeq(ctx)
	if err != nil {
		return nil, err
	}
	if lastSeq >= seq {
		return nil, nil
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	sig, err := c.Signer.Sign(ctx, CheckpointMessage(seq, hash, now))
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	cp := Checkpoint{Seq: seq, Hash: hash, Time: now, Signature: sig}
	if err := c.Store.InsertCheckpoint(ctx, cp); err != nil {
		return nil, err
	}
	if c.Sink != nil {
		line, _ := json.Marshal(lineOf(cp))
		if _, err := c.Sink.Write(append(line, '\n')); err != nil {
			return &cp, fmt.Errorf("write checkpoint sink: %w", err)
		}
		if f, ok := c.Sink.(*os.File); ok {
			_ = f.Sync()
		}
	}
	c.Log.Info("audit checkpoint", slog.Int64("seq", seq), slog.String("hash", hex.EncodeToString(hash)))
	return &cp, nil
}

// Result is the outcome of a verification.
type Result struct {
	OK                 bool
	EventsChecked      int64
	CheckpointsChecked int64
	FirstBadSeq        int64
	Reason             string
	HeadSeq            int64
	HeadHash           []byte
	// AnchorSeq, when not 0, is the signed checkpoint the verified range links to: the
	// events up to it are not stored (archived).
	AnchorSeq int64
}

func (r *Result) fail(seq int64, format string, args ...any) Result {
	r.OK, r.FirstBadSeq, r.Reason = false, seq, fmt.Sprintf(format, args...)
	return *r
}

// Verify recomputes the chain from seq from to seq to (0: the head) and checks every
// stored checkpoint in that range and every held one (from a sink file). It reports
// the first bad seq and why: a modified event (hash mismatch), a deleted event (gap),
// reordered events (seq or prev_hash mismatch), a truncated tail (the chain ends before
// a held checkpoint), or a forged checkpoint (bad signature, or a hash that is not the
// chain's).
//
// From the start (from ≤ 1), a chain whose oldest months were archived and detached
// begins after seq 1: it is verified from its first stored event, linked to the
// signed checkpoint at the seq before it (the archive boundary, Result.AnchorSeq).
// Without such a checkpoint the missing prefix fails as deleted events.
//
// With macs, every event must carry a valid MAC under the audit key (an event appended
// with database credentials alone fails), and its query columns must match its body.
func Verify(ctx context.Context, st ChainReader, signer Signer, macs MACKeys, from, to int64, held []Checkpoint) (Result, error) {
	if from < 1 {
		from = 1
	}
	r := Result{OK: true}
	stored, err := st.Checkpoints(ctx, from-1, to)
	if err != nil {
		return r, err
	}
	cps := append(stored, held...)
	if from == 1 {
		first, err := firstStored(ctx, st, to)
		if err != nil {
			return r, err
		}
		if first > 1 && slices.ContainsFunc(cps, func(c Checkpoint) bool { return c.Seq == first-1 }) {
			from = first
		}
	}
	want, bad, err := checkSignatures(ctx, signer, cps, from, to)
	if bad != nil || err != nil {
		return r.orBad(bad), err
	}
	prev, bad, err := linkInto(ctx, st, &r, from, cps)
	if bad != nil || err != nil {
		return r.orBad(bad), err
	}
	v := &chainCheck{Result: r, prev: prev, expect: from, want: want, macs: macs}
	stop := errors.New("stop")
	err = st.ReadAudit(ctx, from, to, func(row Row) error {
		if v.bad = v.check(row); v.bad != nil {
			return stop
		}
		return nil
	})
	if v.bad != nil {
		return *v.bad, nil
	}
	if err != nil {
		return v.Result, err
	}
	for seq := range v.want {
		// A checkpoint beyond the last event: the tail was cut off.
		if to <= 0 || seq <= to {
			return v.fail(v.HeadSeq+1, "the chain ends at seq %d, but a signed checkpoint covers seq %d (truncated)", v.HeadSeq, seq), nil
		}
	}
	return v.Result, nil
}

// firstStored is the seq of the first stored event up to to (0: the head), 1 when
// there is none.
func firstStored(ctx context.Context, st ChainReader, to int64) (int64, error) {
	first := int64(1)
	stop := errors.New("stop")
	err := st.ReadAudit(ctx, 1, to, func(row Row) error { first = row.Seq; return stop })
	if err != nil && !errors.Is(err, stop) {
		return 0, err
	}
	return first, nil
}

// linkInto returns the hash the event at from must link to: zeros for seq 1, else the
// stored hash of the event before, else (that event archived) the hash of a signed
// checkpoint at from-1, whose signature checkSignatures verified; r.AnchorSeq records
// which.
func linkInto(ctx context.Context, st ChainReader, r *Result, from int64, cps []Checkpoint) ([]byte, *Result, error) {
	if from == 1 {
		return GenesisHash, nil, nil
	}
	var prev []byte
	if err := st.ReadAudit(ctx, from-1, from-1, func(row Row) error { prev = row.Hash; return nil }); err != nil {
		return nil, nil, err
	}
	if prev != nil {
		return prev, nil, nil
	}
	for _, c := range cps {
		if c.Seq == from-1 {
			r.AnchorSeq = c.Seq
			return c.Hash, nil, nil
		}
	}
	bad := r.fail(from-1, "event %d, before the range, is missing, and no signed checkpoint at seq %d anchors the chain (deleted, or archived without a boundary checkpoint)", from-1, from-1)
	return nil, &bad, nil
}

func (r Result) orBad(bad *Result) Result {
	if bad != nil {
		return *bad
	}
	return r
}

// checkSignatures verifies every checkpoint's signature and returns, per seq within
// [from, to], the hashes the chain must have there.
func checkSignatures(ctx context.Context, signer Signer, cps []Checkpoint, from, to int64) (map[int64][][]byte, *Result, error) {
	want := map[int64][][]byte{}
	for _, c := range cps {
		ok, err := signer.Verify(ctx, CheckpointMessage(c.Seq, c.Hash, c.Time), c.Signature)
		if err != nil {
			return nil, nil, fmt.Errorf("verify checkpoint signature: %w", err)
		}
		if !ok {
			r := (&Result{}).fail(c.Seq, "checkpoint at seq %d: signature does not verify (forged or altered checkpoint)", c.Seq)
			return nil, &r, nil
		}
		if c.Seq >= from && (to <= 0 || c.Seq <= to) {
			want[c.Seq] = append(want[c.Seq], c.Hash)
		}
	}
	return want, nil, nil
}

// chainCheck walks the chain event by event.
type chainCheck struct {
	Result
	prev   []byte
	expect int64
	want   map[int64][][]byte
	bad    *Result
	macs   MACKeys
}

// check verifies one event: its place, its link, the seq in its body, its hash and
// the checkpoints at its seq. It returns the failure, or nil.
func (v *chainCheck) check(row Row) *Result {
	fail := func(seq int64, format string, args ...any) *Result {
		res := v.fail(seq, format, args...)
		return &res
	}
	if row.Seq != v.expect {
		return fail(v.expect, "event %d is missing (deleted), next stored event is %d", v.expect, row.Seq)
	}
	if !bytes.Equal(row.PrevHash, v.prev) {
		return fail(row.Seq, "event %d: prev_hash does not link to event %d (reordered or rewritten)", row.Seq, row.Seq-1)
	}
	var probe struct {
		Seq *int64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(row.Body), &probe); err != nil || probe.Seq == nil || *probe.Seq != row.Seq {
		return fail(row.Seq, "event %d: body does not carry seq %d (reordered or altered)", row.Seq, row.Seq)
	}
	h := Hash(v.prev, []byte(row.Body))
	if !bytes.Equal(h, row.Hash) {
		return fail(row.Seq, "event %d: hash does not match its content (modified)", row.Seq)
	}
	if err := checkColumns(row); err != nil {
		return fail(row.Seq, "event %d: %v", row.Seq, err)
	}
	if v.macs != nil {
		if err := checkMAC(v.macs, row); err != nil {
			return fail(row.Seq, "event %d: %v", row.Seq, err)
		}
	}
	for _, ch := range v.want[row.Seq] {
		if !bytes.Equal(ch, h) {
			return fail(row.Seq, "event %d: the chain's hash differs from the signed checkpoint (history rewritten)", row.Seq)
		}
		v.CheckpointsChecked++
	}
	delete(v.want, row.Seq)
	v.prev = h
	v.EventsChecked++
	v.HeadSeq, v.HeadHash = row.Seq, h
	v.expect++
	return nil
}

// OpenSink opens the checkpoint sink named by a setting: "none" (nil), "stdout", or a
// file appended to (created with its directory, mode 0600). The closer is never nil.
func OpenSink(name string) (io.Writer, func() error, error) {
	switch name {
	case "none":
		return nil, func() error { return nil }, nil
	case "stdout":
		return os.Stdout, func() error { return nil }, nil
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return nil, nil, fmt.Errorf("audit checkpoint sink: %w", err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit checkpoint sink: %w", err)
	}
	return f, f.Close, nil
}
