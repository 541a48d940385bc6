package tokenizer

import (
	"context"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/keys"
)

// Offset is one stored per-subject date-shift offset: found by a keyed digest of the
// subject, the offset itself sealed (AES-256-GCM, the digest as associated data).
type Offset struct {
	SubjectDigest []byte
	CT            []byte
	// KeyVersion is the value-encryption key version that sealed CT, or 0 when the
	// subject's own key did (SubjectID set): the row then goes when the subject is erased.
	KeyVersion int
	SubjectID  int64
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
// draw and stored sealed; with create false unknown subjects are left out. With
// subjects enabled, an offset is sealed under the subject's own key and its row goes
// when the subject is erased (an erased patient's old offset cannot be opened from a
// backup either). It is the storage behind fhir.Offsets; offsets never leave the service.
func (e *Engine) SubjectOffsets(ctx context.Context, st OffsetStore, subjects []string, create bool, draw func() (int, error)) (map[string]int, error) {
	fpKey, err := e.keys.Current(keys.Fingerprint)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "data keys not loaded")
	}
	digests := make([][]byte, len(subjects))
	for i, s := range subjects {
		digests[i] = e.fingerprint(fpKey.Material, subjectNamespace, "", s)
	}
	sks, err := e.offsetSubjects(ctx, subjects, create)
	if err != nil {
		return nil, err
	}
	rows, err := st.LoadOffsets(ctx, digests)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	if create {
		if rows, err = e.createOffsets(ctx, st, subjects, digests, rows, sks, draw); err != nil {
			return nil, err
		}
	}
	out := make(map[string]int, len(subjects))
	for i, s := range subjects {
		row, ok := rows[string(digests[i])]
		if !ok {
			continue
		}
		a, err := e.offsetAEAD(row, sks[s])
		if err != nil {
			return nil, err
		}
		if a == nil {
			continue // sealed for a subject erased since: no offset any more
		}
		pt, err := open(a, row.SubjectDigest, row.CT)
		if err != nil || len(pt) != 4 {
			return nil, errs.Wrap(errs.Internal, fmt.Errorf("offset: %v", err), "stored date shift does not authenticate")
		}
		out[s] = int(int32(binary.BigEndian.Uint32(pt)))
	}
	return out, nil
}

// offsetSubjects returns the keys of the subjects (creating new ones when create), or
// nil when subjects are not enabled. With create false, unknown and erased subjects are
// left out.
func (e *Engine) offsetSubjects(ctx context.Context, subjects []string, create bool) (map[string]*subjectKeys, error) {
	if e.subj == nil {
		return nil, nil
	}
	if create {
		return e.resolveSubjects(ctx, subjects)
	}
	var all [][]byte
	for _, name := range subjects {
		ds, _, err := e.subjectDigests(name)
		if err != nil {
			return nil, err
		}
		all = append(all, ds...)
	}
	known, err := e.subj.store.SubjectsByDigest(ctx, all) // one read for the batch
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	out := map[string]*subjectKeys{}
	for _, name := range subjects {
		ds, _, _ := e.subjectDigests(name)
		for _, d := range ds {
			s, ok := known[string(d)]
			if !ok {
				continue
			}
			sk, err := e.subjectKeys(ctx, s)
			if errors.Is(err, keys.ErrSubjectKeyGone) {
				break
			}
			if err != nil {
				return nil, err
			}
			out[name] = sk
			break
		}
	}
	return out, nil
}

// offsetAEAD is the cipher that sealed row: the subject's (nil when the subject is not
// the one that sealed it any more) or the value key's version.
func (e *Engine) offsetAEAD(row Offset, sk *subjectKeys) (cipher.AEAD, error) {
	if row.KeyVersion == 0 {
		if sk == nil || sk.id != row.SubjectID {
			return nil, nil
		}
		return sk.aead, nil
	}
	return e.aeadVersion(row.KeyVersion)
}

// createOffsets draws and stores offsets for the digests without one, then reads back
// what is stored (another request or replica may have been first).
func (e *Engine) createOffsets(ctx context.Context, st OffsetStore, subjects []string, digests [][]byte, have map[string]Offset, sks map[string]*subjectKeys, draw func() (int, error)) (map[string]Offset, error) {
	encKey, err := e.keys.Current(keys.ValueEncryption)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "data keys not loaded")
	}
	valueAEAD, err := e.aead(encKey)
	if err != nil {
		return nil, err
	}
	var missing [][]byte
	var rows []Offset
	seen := map[string]bool{}
	for i, d := range digests {
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
		row := Offset{SubjectDigest: d, CT: seal(valueAEAD, d, pt[:]), KeyVersion: encKey.Version}
		if sk := sks[subjects[i]]; sk != nil {
			row = Offset{SubjectDigest: d, CT: seal(sk.aead, d, pt[:]), SubjectID: sk.id}
		}
		rows = append(rows, row)
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
