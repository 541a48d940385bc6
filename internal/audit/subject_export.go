package audit

import (
	"context"
	"errors"
	"io"
	"time"
)

// MaxAccountingRange is the longest range of an accounting of disclosures: the six
// years of 45 CFR 164.528(a)(3), with a day of slack for leap days and time zones.
const MaxAccountingRange = (6*365 + 2) * 24 * time.Hour

// CheckRange validates an accounting range; a zero bound is open.
func CheckRange(start, end time.Time) error {
	switch {
	case !end.IsZero() && end.Before(start):
		return errors.New("end_time: before start_time")
	case !start.IsZero() && !end.IsZero() && end.Sub(start) > MaxAccountingRange:
		return errors.New("start_time, end_time: a range of at most six years (45 CFR 164.528)")
	}
	return nil
}

// rowsReader serves a fixed list of rows as a ChainReader, so that a selection of
// events (one subject's disclosures) exports like the whole log.
type rowsReader []Row

func (r rowsReader) ReadAudit(ctx context.Context, _, _ int64, fn func(Row) error) error {
	for _, row := range r {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	return nil
}

func (r rowsReader) Checkpoints(context.Context, int64, int64) ([]Checkpoint, error) {
	return nil, nil
}

// ExportDisclosures writes the disclosures found under digests (one subject's audit
// digests) with start ≤ time < end in format f: the same columns and resources as
// Export, only those events.
func ExportDisclosures(ctx context.Context, st DisclosureReader, digests [][]byte, start, end time.Time, f Format, w io.Writer) error {
	rows, err := st.Disclosures(ctx, digests, start, end)
	if err != nil {
		return err
	}
	var sel rowsReader
	for _, r := range rows {
		if isDisclosure(r) {
			sel = append(sel, r)
		}
	}
	return Export(ctx, sel, f, 0, 0, w)
}

// isDisclosure reports whether r is a successful reveal, as Disclosures counts them.
func isDisclosure(r Row) bool {
	if !IsReveal(r.Operation) {
		return false
	}
	d, err := Decode(r.Body)
	return err == nil && d.Outcome == "OK"
}

// subjectEntity is the AuditEvent entity of a data subject: a Person in the role
// Patient, named by its keyed digest (the log never holds the identifier).
func subjectEntity(digest string) entity {
	return entity{
		What: reference{Identifier: &identifier{System: "urn:tokenizer:subject-digest", Value: digest}},
		Type: &coding{System: entityTypeSys, Code: "1", Display: "Person"},
		Role: &coding{System: "http://terminology.hl7.org/CodeSystem/object-role", Code: "1", Display: "Patient"},
	}
}
