package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

var zeroTime time.Time

// OpForgetSubject is the operation of an erasure's audit event: the erasure receipt.
const OpForgetSubject = "forget_subject"

// ReceiptVersion is the version of the receipt document.
const ReceiptVersion = 1

// PublicKeyer is implemented by signers whose checkpoint signatures are ed25519 over
// the checkpoint message, so that a receipt can be verified offline with the public
// key of the signature's key version.
type PublicKeyer interface {
	PublicKey(ctx context.Context, signature string) (ed25519.PublicKey, error)
}

// Receipt is an erasure receipt with its inclusion proof: the event's canonical body,
// the chain hash before it, the canonical bodies of every later event up to a signed
// checkpoint, and that checkpoint. Chaining Hash from PrevHash over Event and then
// Following must give the checkpoint's hash, whose signature must verify.
type Receipt struct {
	Version    int            `json:"version"`
	Event      string         `json:"event"`
	PrevHash   string         `json:"prev_hash"`
	Following  []string       `json:"following"`
	Checkpoint CheckpointLine `json:"checkpoint"`
	// PublicKey is the ed25519 key (hex) of the checkpoint's signature, as the service
	// reports it. A verifier should pin its own copy rather than trust this one.
	PublicKey string `json:"public_key,omitempty"`
}

// ErrNoCheckpointYet means the receipt's event is not yet under a signed checkpoint.
var ErrNoCheckpointYet = errors.New("no signed checkpoint covers the receipt yet")

// Receipts returns the erasure receipts recorded under any of digests (a subject's
// audit digests), oldest first, each with its proof. A receipt not yet covered by a
// checkpoint comes back without Checkpoint (Checkpoint.Seq 0).
func Receipts(ctx context.Context, st ChainStore, pk PublicKeyer, digests [][]byte) ([]Receipt, error) {
	rows, err := st.Disclosures(ctx, digests, zeroTime, zeroTime)
	if err != nil {
		return nil, err
	}
	var out []Receipt
	for _, r := range rows {
		if r.Operation != OpForgetSubject {
			continue
		}
		if d, err := Decode(r.Body); err != nil || d.Outcome != "OK" {
			continue
		}
		rc, err := proofOf(ctx, st, pk, r)
		if err != nil {
			return nil, err
		}
		out = append(out, rc)
	}
	return out, nil
}

// proofOf builds the receipt of row r against the first checkpoint at or after it.
func proofOf(ctx context.Context, st ChainStore, pk PublicKeyer, r Row) (Receipt, error) {
	rc := Receipt{Version: ReceiptVersion, Event: r.Body, PrevHash: hex.EncodeToString(r.PrevHash), Following: []string{}}
	cps, err := st.Checkpoints(ctx, r.Seq, 0)
	if err != nil || len(cps) == 0 {
		return rc, err
	}
	cp := cps[0]
	if cp.Seq > r.Seq {
		err = st.ReadAudit(ctx, r.Seq+1, cp.Seq, func(f Row) error {
			rc.Following = append(rc.Following, f.Body)
			return nil
		})
		if err != nil {
			return rc, err
		}
	}
	rc.Checkpoint = lineOf(cp)
	if pk != nil {
		if pub, err := pk.PublicKey(ctx, cp.Signature); err == nil {
			rc.PublicKey = hex.EncodeToString(pub)
		}
	}
	return rc, nil
}

// VerifyReceipt checks a receipt offline: the event is a successful erasure, the
// hashes chain from it through the following events to the checkpoint, and the
// checkpoint's signature verifies under pub. It returns the decoded event.
func VerifyReceipt(rc Receipt, pub ed25519.PublicKey) (Decoded, error) {
	ev, err := Decode(rc.Event)
	switch {
	case err != nil:
		return ev, errors.New("event: not a canonical event body")
	case rc.Version != ReceiptVersion:
		return ev, fmt.Errorf("version %d: want %d", rc.Version, ReceiptVersion)
	case ev.Operation != OpForgetSubject || ev.Outcome != "OK":
		return ev, errors.New("event: not a successful erasure")
	case len(ev.SubjectDigests) == 0:
		return ev, errors.New("event: names no subject")
	case rc.Checkpoint.Seq == 0:
		return ev, ErrNoCheckpointYet
	}
	h, err := hex.DecodeString(rc.PrevHash)
	if err != nil {
		return ev, errors.New("prev_hash: not hex")
	}
	h = Hash(h, []byte(rc.Event))
	want := ev.Seq
	for i, f := range rc.Following {
		d, err := Decode(f)
		if err != nil || d.Seq != want+1 {
			return ev, fmt.Errorf("following[%d]: not the event after seq %d", i, want)
		}
		want = d.Seq
		h = Hash(h, []byte(f))
	}
	cp, err := rc.Checkpoint.checkpoint()
	if err != nil {
		return ev, fmt.Errorf("checkpoint: %w", err)
	}
	if cp.Seq != want || hex.EncodeToString(h) != rc.Checkpoint.Hash {
		return ev, fmt.Errorf("proof: the chain from the event does not reach checkpoint seq %d", cp.Seq)
	}
	if !VerifyEd25519(pub, CheckpointMessage(cp.Seq, cp.Hash, cp.Time), cp.Signature) {
		return ev, errors.New("checkpoint: signature does not verify under the public key")
	}
	return ev, nil
}

// VerifyEd25519 checks a checkpoint signature of the form "<provider>:v<n>:<base64>"
// (the local provider's and Vault Transit's ed25519 signatures) under pub.
func VerifyEd25519(pub ed25519.PublicKey, message []byte, signature string) bool {
	parts := strings.SplitN(signature, ":", 3)
	if len(parts) != 3 || len(pub) != ed25519.PublicKeySize {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	return ed25519.Verify(pub, message, sig)
}

// MarshalReceipt is the receipt as one JSON document.
func MarshalReceipt(rc Receipt) (string, error) {
	b, err := json.MarshalIndent(rc, "", "  ")
	return string(b), err
}
