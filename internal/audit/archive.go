package audit

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// ArchiveVersion is the version of the archive file format (docs/audit.md).
const ArchiveVersion = 1

// ArchiveHeader is the first line of an archive: which run of the chain it holds. The
// events [FirstSeq, LastSeq] chain from PrevHash (the hash of FirstSeq-1; zeros when
// FirstSeq is 1) to LastHash.
type ArchiveHeader struct {
	Version   int    `json:"version"`
	Partition string `json:"partition"`
	// From and To bound the partition's months, [From, To) as dates (From empty: the
	// partition of the rows from before partitioning, unbounded below).
	From     string `json:"from,omitempty"`
	To       string `json:"to"`
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
	PrevHash string `json:"prev_hash"`
	LastHash string `json:"last_hash"`
	// PublicKey is the checkpoint signing key (ed25519, hex) as the service reports it;
	// a verifier should pin its own copy.
	PublicKey string `json:"public_key,omitempty"`
}

// archiveLine is one line of an archive: the header, a signed checkpoint, or an event
// (the line `audit export --format jsonl` writes).
type archiveLine struct {
	Archive    *ArchiveHeader  `json:"archive,omitempty"`
	Checkpoint *CheckpointLine `json:"checkpoint,omitempty"`
	Event      json.RawMessage `json:"event,omitempty"`
	Hash       string          `json:"hash,omitempty"`
	PrevHash   string          `json:"prev_hash,omitempty"`
}

// WriteArchive writes an archive of the events [h.FirstSeq, h.LastSeq] as JSON lines:
// the header, the signed checkpoints cps (those at FirstSeq-1 and LastSeq are the
// boundaries VerifyArchive needs), then the events as `audit export --format jsonl`
// writes them.
func WriteArchive(ctx context.Context, st ChainReader, h ArchiveHeader, cps []Checkpoint, w io.Writer) error {
	h.Version = ArchiveVersion
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(archiveLine{Archive: &h}); err != nil {
		return err
	}
	for _, c := range cps {
		l := lineOf(c)
		if err := enc.Encode(archiveLine{Checkpoint: &l}); err != nil {
			return err
		}
	}
	if err := Export(ctx, st, JSONL, h.FirstSeq, h.LastSeq, bw); err != nil {
		return err
	}
	return bw.Flush()
}

// SignCheckpoint signs and stores a checkpoint at seq with hash, which the caller has
// verified to be the chain's (an archive boundary, which need not be the head).
func SignCheckpoint(ctx context.Context, signer Signer, st CheckpointStore, seq int64, hash []byte, now time.Time) (Checkpoint, error) {
	now = now.UTC().Truncate(time.Microsecond)
	sig, err := signer.Sign(ctx, CheckpointMessage(seq, hash, now))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: %w", err)
	}
	cp := Checkpoint{Seq: seq, Hash: hash, Time: now, Signature: sig}
	return cp, st.InsertCheckpoint(ctx, cp)
}

// ArchiveResult is what VerifyArchive established.
type ArchiveResult struct {
	Header      ArchiveHeader
	Events      int64
	Checkpoints int64
}

// VerifyArchive checks an archive offline: every checkpoint's signature under pub; the
// events consecutive from FirstSeq, each linked to the one before, carrying its seq,
// hashing to its hash and matching every checkpoint at its seq; the chain reaching
// LastSeq and LastHash under a signed checkpoint at LastSeq; and its start anchored:
// genesis for seq 1, else a signed checkpoint at FirstSeq-1 or, given prevLastHash (the
// previous archive's LastHash), that hash. A nil pub means the key in the header.
func VerifyArchive(r io.Reader, pub ed25519.PublicKey, prevLastHash string) (ArchiveResult, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	var res ArchiveResult
	v := archiveCheck{want: map[int64][]string{}, pub: pub}
	for n := 1; sc.Scan(); n++ {
		var l archiveLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return res, fmt.Errorf("line %d: not JSON", n)
		}
		if err := v.line(n, l); err != nil {
			return res, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	if err := v.finish(prevLastHash); err != nil {
		return res, err
	}
	return ArchiveResult{Header: v.header, Events: v.events, Checkpoints: v.matched}, nil
}

// archiveCheck walks an archive line by line.
type archiveCheck struct {
	header  ArchiveHeader
	pub     ed25519.PublicKey
	started bool
	want    map[int64][]string // signed hashes per seq
	prev    string             // the running chain hash, hex
	next    int64
	events  int64
	matched int64
}

func (v *archiveCheck) line(n int, l archiveLine) error {
	switch {
	case n == 1:
		if l.Archive == nil || l.Archive.Version != ArchiveVersion {
			return fmt.Errorf("not an archive header of version %d", ArchiveVersion)
		}
		v.header = *l.Archive
		v.prev, v.next = v.header.PrevHash, v.header.FirstSeq
		if v.pub == nil {
			k, err := hex.DecodeString(v.header.PublicKey)
			if err != nil || len(k) != ed25519.PublicKeySize {
				return errors.New("no public key given, and none in the header")
			}
			v.pub = k
		}
		return nil
	case l.Checkpoint != nil:
		if v.started {
			return errors.New("checkpoint after the first event")
		}
		return v.checkpoint(*l.Checkpoint)
	case l.Event != nil:
		v.started = true
		return v.event(l)
	}
	return errors.New("neither a checkpoint nor an event")
}

func (v *archiveCheck) checkpoint(l CheckpointLine) error {
	c, err := l.checkpoint()
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if !VerifyEd25519(v.pub, CheckpointMessage(c.Seq, c.Hash, c.Time), c.Signature) {
		return fmt.Errorf("checkpoint at seq %d: signature does not verify under the public key", c.Seq)
	}
	v.want[c.Seq] = append(v.want[c.Seq], l.Hash)
	return nil
}

func (v *archiveCheck) event(l archiveLine) error {
	body := []byte(l.Event)
	var probe struct {
		Seq *int64 `json:"seq"`
	}
	if err := json.Unmarshal(body, &probe); err != nil || probe.Seq == nil || *probe.Seq != v.next {
		return fmt.Errorf("event %d is missing or out of order", v.next)
	}
	prev, err := hex.DecodeString(v.prev)
	if err != nil || l.PrevHash != v.prev {
		return fmt.Errorf("event %d: prev_hash does not link to the event before", v.next)
	}
	h := hex.EncodeToString(Hash(prev, body))
	if h != l.Hash {
		return fmt.Errorf("event %d: hash does not match its content (modified)", v.next)
	}
	for _, w := range v.want[v.next] {
		if w != h {
			return fmt.Errorf("event %d: the chain's hash differs from the signed checkpoint", v.next)
		}
		v.matched++
	}
	v.prev = h
	v.next++
	v.events++
	return nil
}

// finish checks the ends: the start anchored, the last event the header's, under a
// signed checkpoint.
func (v *archiveCheck) finish(prevLastHash string) error {
	h := v.header
	switch {
	case h.Version == 0:
		return errors.New("empty archive")
	case v.events == 0 || v.next-1 != h.LastSeq || v.prev != h.LastHash:
		return fmt.Errorf("the events end at seq %d, not at the header's last seq %d and hash", v.next-1, h.LastSeq)
	case !slices.Contains(v.want[h.LastSeq], h.LastHash):
		return fmt.Errorf("no signed checkpoint at the last seq %d", h.LastSeq)
	}
	switch {
	case h.FirstSeq == 1:
		if h.PrevHash != hex.EncodeToString(GenesisHash) {
			return errors.New("the first event of the chain does not link to the genesis hash")
		}
	case prevLastHash != "":
		if prevLastHash != h.PrevHash {
			return errors.New("the archive does not link to the previous archive's last hash")
		}
	case !slices.Contains(v.want[h.FirstSeq-1], h.PrevHash):
		return fmt.Errorf("no signed checkpoint at seq %d anchors the start (pass the previous archive)", h.FirstSeq-1)
	}
	return nil
}
