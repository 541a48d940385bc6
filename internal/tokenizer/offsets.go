package tokenizer

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/keys"
)

// Offset is one stored per-subject date-shift offset: found by a keyed digest of the
// subject, the offset itself sealed (AES-256-GCM, the digest as associated data).
type Offset struct {
	SubjectDigest []byte
	CT            []byte
	KeyVersion    int
}

// OffsetStore keeps the offsets. internal/store implements it on PostgreSQL and in
// memory; the storetest suite covers it.
type OffsetStore interface {
	// LoadOffsets returns the rows of the digests, keyed by string(digest).
	LoadOffsets(ctx context.Context, digests [][]byte) (map[string]Offset, error)
	// InsertOffsets stores the rows whose digest has none yet; an existing row wins, so
	// that concurrent first uses of a subject agree after reading back.
	InsertOffsets(ctx context.Context, rows []Offset) error
}

// subjectNamespace keeps subject digests apart from value fingerprints of any class
// (class names cannot contain ':').
const subjectNamespace = "subject:date-shift"

// SubjectOffsets returns the date-shift offsets (days) of subjects: drawn once with
// draw and stored sealed; with create false unknown subjects are left out. It is the
// storage behind fhir.Offsets; the offsets never leave the service.
func (e *Engine) SubjectOffsets(ctx context.Context, st OffsetStore, subjects []string, create bool, draw func() (int, error)) (map[string]int, error) {
	fpKey, err := e.keys.Current(keys.Fingerprint)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "data keys not loaded")
	}
	digests := make([][]byte, len(subjects))
	for i, s := range subjects {
		digests[i] = e.fingerprint(fpKey.Material, subjectNamespace, "", s)
	}
	rows, err := st.LoadOffsets(ctx, digests)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	if create {
		if rows, err = e.createOffsets(ctx, st, digests, rows, draw); err != nil {
			return nil, err
		}
	}
	out := make(map[string]int, len(subjects))
	for i, s := range subjects {
		row, ok := rows[string(digests[i])]
		if !ok {
			continue
		}
		a, err := e.aeadVersion(row.KeyVersion)
		if err != nil {
			return nil, err
		}
		pt, err := open(a, row.SubjectDigest, row.CT)
		if err != nil || len(pt) != 4 {
			return nil, errs.Wrap(errs.Internal, fmt.Errorf("offset: %v", err), "stored date shift does not authenticate")
		}
		out[s] = int(int32(binary.BigEndian.Uint32(pt)))
	}
	return out, nil
}

// createOffsets draws and stores offsets for the digests without one, then reads back
// what is stored (another request or replica may have been first).
func (e *Engine) createOffsets(ctx context.Context, st OffsetStore, digests [][]byte, have map[string]Offset, draw func() (int, error)) (map[string]Offset, error) {
	encKey, err := e.keys.Current(keys.ValueEncryption)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "data keys not loaded")
	}
	a, err := e.aead(encKey)
	if err != nil {
		return nil, err
	}
	var missing [][]byte
	var rows []Offset
	seen := map[string]bool{}
	for _, d := range digests {
		if _, ok := have[string(d)]; ok || seen[string(d)] {
			continue
		}
		seen[string(d)] = true
		days, err := draw()
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "draw a date shift")
		}
		var pt [4]byte
		binary.BigEndian.PutUint32(pt[:], uint32(int32(days)))
		rows = append(rows, Offset{SubjectDigest: d, CT: seal(a, d, pt[:]), KeyVersion: encKey.Version})
		missing = append(missing, d)
	}
	if len(rows) == 0 {
		return have, nil
	}
	if err := st.InsertOffsets(ctx, rows); err != nil {
		return nil, storeErr(ctx, err)
	}
	got, err := st.LoadOffsets(ctx, missing)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	for k, v := range got {
		have[k] = v
	}
	return have, nil
}
