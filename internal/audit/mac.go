package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
)

// MACKey returns the current audit key (for the writer): its version and material.
type MACKey func() (version int, key []byte, err error)

// MACKeys returns the audit key of a version (for verification).
type MACKeys func(version int) ([]byte, error)

// ErrNoMACKey means the writer has no audit key yet: events cannot be authenticated,
// so they are not written and requests fail closed.
var ErrNoMACKey = errors.New("audit key not loaded")

// EventMAC authenticates an event: HMAC-SHA-256 under the audit key of the event's
// chain hash (which covers its body and, through prev_hash, every event before it).
// The key is wrapped by the key provider and never stored in clear in the database,
// so database credentials alone cannot produce it.
func EventMAC(key, hash []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("tokenizer audit event v1\n"))
	m.Write(hash)
	return m.Sum(nil)
}

// SetMACKey makes the writer authenticate every event with the current audit key.
// Until it is set and returns a key, appends fail (fail closed): an event nobody can
// authenticate is indistinguishable from a forged one.
func (w *Writer) SetMACKey(k MACKey) { w.macKey.Store(&k) }

// authenticate sets the MAC of rows, when the writer has a key function.
func (w *Writer) authenticate(rows []Row) error {
	kp := w.macKey.Load()
	if kp == nil {
		return nil
	}
	v, key, err := (*kp)()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoMACKey, err)
	}
	for i := range rows {
		rows[i].MAC, rows[i].MACVersion = EventMAC(key, rows[i].Hash), v
	}
	return nil
}

// checkMAC verifies the event's MAC with the key of its version.
func checkMAC(keys MACKeys, row Row) error {
	if row.MACVersion <= 0 || len(row.MAC) == 0 {
		return errors.New("has no MAC (not written by the service: forged, or older than migration 3)")
	}
	key, err := keys(row.MACVersion)
	if err != nil {
		return fmt.Errorf("names audit key version %d, which does not exist (forged)", row.MACVersion)
	}
	if !hmac.Equal(EventMAC(key, row.Hash), row.MAC) {
		return errors.New("MAC does not verify (forged by a database writer)")
	}
	return nil
}

// checkColumns compares the query columns of a row (time, operation, caller, token and
// subject digests) with its hashed body: ListDisclosures and exports filter on them, so an
// edited column must fail verification like an edited body.
func checkColumns(row Row) error {
	var b struct {
		Time           string   `json:"time"`
		Operation      string   `json:"operation"`
		Caller         string   `json:"caller"`
		TokenDigests   []string `json:"token_digests"`
		SubjectDigests []string `json:"subject_digests"`
	}
	if err := json.Unmarshal([]byte(row.Body), &b); err != nil {
		return errors.New("body is not JSON")
	}
	if !row.Time.IsZero() && row.Time.UTC().Format(TimeLayout) != b.Time {
		return errors.New("time column differs from the hashed body")
	}
	if row.Operation != b.Operation || row.Caller != b.Caller {
		return errors.New("operation or caller column differs from the hashed body")
	}
	col := make([]string, len(row.TokenDigests))
	for i, d := range row.TokenDigests {
		col[i] = hex.EncodeToString(d)
	}
	// The column indexes the token digests and then the subject digests (queryDigests).
	want := append(slices.Clone(b.TokenDigests), b.SubjectDigests...)
	if !slices.Equal(col, want) && !(len(col) == 0 && len(want) == 0) {
		return errors.New("token_digests column differs from the hashed body (disclosures hidden or invented)")
	}
	return nil
}

// SinkCheckpoints reads the checkpoints of a configured sink (audit.checkpoint_sink)
// when it is a file: verification holds the chain to them by default, so that a log
// truncated or wiped in the database fails. "stdout" and "none" hold nothing here
// (ship and pass them with --checkpoint); a missing file holds nothing yet.
func SinkCheckpoints(sink string) ([]Checkpoint, bool, error) {
	if sink == "" || sink == "stdout" || sink == "none" {
		return nil, false, nil
	}
	raw, err := os.ReadFile(sink)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit checkpoint sink: %w", err)
	}
	cps, err := ReadCheckpoints(bytes.NewReader(raw))
	return cps, true, err
}
