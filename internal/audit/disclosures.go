package audit

import (
	"context"
	"time"
)

// DisclosureReader is what the accounting of disclosures needs of the chain.
type DisclosureReader interface {
	Disclosures(ctx context.Context, digests [][]byte, start, end time.Time) ([]Row, error)
}

// Disclosure is one successful reveal of a token, read from the audit log (45 CFR
// 164.528 accounting of disclosures).
type Disclosure struct {
	Seq  int64
	Time time.Time
	Decoded
}

// Disclosures lists the successful reveals recorded under any of digests (the audit
// digests of one token), oldest first, with start ≤ time < end (zero end: no bound).
// Deletions also carry digests; only reveals are disclosures.
func Disclosures(ctx context.Context, st DisclosureReader, digests [][]byte, start, end time.Time) ([]Disclosure, error) {
	rows, err := st.Disclosures(ctx, digests, start, end)
	if err != nil {
		return nil, err
	}
	var out []Disclosure
	for _, r := range rows {
		if !IsReveal(r.Operation) {
			continue
		}
		d, err := Decode(r.Body)
		if err != nil || d.Outcome != "OK" {
			continue
		}
		out = append(out, Disclosure{Seq: r.Seq, Time: r.Time, Decoded: d})
	}
	return out, nil
}

// IsReveal reports whether events of operation op disclose values when they succeed:
// detokenization, unary or streamed, and FHIR re-identification, unary or streamed
// (bulk jobs and warehouse functions reveal through these).
func IsReveal(op string) bool {
	switch op {
	case "detokenize", "detokenize_stream", "detokenize_resources", "detokenize_resources_stream":
		return true
	}
	return false
}
