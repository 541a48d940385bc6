package fhir

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/phivault/tokenizer/internal/errs"
)

// Stream limits. A Bundle is read one entry at a time and processed ChunkSize entries at a
// time, so memory holds at most ChunkSize entries (plus the map of Patient fullUrls seen,
// one short string per patient, and the report) whatever the Bundle's length.
const (
	ChunkSize       = 256
	MaxNDJSONLine   = 16 << 20 // bytes per NDJSON line (one resource)
	maxBundleFields = 64       // Bundle-level fields besides entry
)

// DeidentifyJSON de-identifies one resource or one Bundle (streamed entry by entry) from
// r to w, answering in the same shape. Entries that fail are left out and reported. On a
// returned error the output is incomplete and must be discarded.
func (p *Processor) DeidentifyJSON(ctx context.Context, r io.Reader, w io.Writer) (*Report, error) {
	return p.runJSON(ctx, r, w, false)
}

// ReidentifyJSON reverses DeidentifyJSON.
func (p *Processor) ReidentifyJSON(ctx context.Context, r io.Reader, w io.Writer) (*Report, error) {
	return p.runJSON(ctx, r, w, true)
}

// DeidentifyNDJSON de-identifies newline-delimited resources (FHIR Bulk Data); a line
// that fails is left out and reported with its 0-based line index.
func (p *Processor) DeidentifyNDJSON(ctx context.Context, r io.Reader, w io.Writer) (*Report, error) {
	return p.runNDJSON(ctx, r, w, false)
}

// ReidentifyNDJSON reverses DeidentifyNDJSON.
func (p *Processor) ReidentifyNDJSON(ctx context.Context, r io.Reader, w io.Writer) (*Report, error) {
	return p.runNDJSON(ctx, r, w, true)
}

// Resources processes separate resources (a unary request's list) in one batch; a failed
// resource's output is nil.
func (p *Processor) Resources(ctx context.Context, in [][]byte, reverse bool) ([][]byte, *Report, error) {
	rep := newReport()
	docs := make([]*doc, len(in))
	for i, b := range in {
		v, err := decodeOne(b)
		docs[i] = newDoc(i, nil, v)
		if err != nil {
			docs[i].err = &ResourceError{Index: i, Reason: err.Error()}
		}
	}
	if err := p.batch(ctx, docs, resolver{}, reverse, rep); err != nil {
		return nil, nil, err
	}
	out := make([][]byte, len(in))
	for i, d := range docs {
		if d.err == nil {
			out[i], _ = encode(d.res)
		}
	}
	return out, rep, nil
}

func (p *Processor) batch(ctx context.Context, docs []*doc, rs resolver, reverse bool, rep *Report) error {
	var err error
	if reverse {
		err = p.reidentify(ctx, docs, rs, rep)
	} else {
		err = p.deidentify(ctx, docs, rs, rep)
	}
	if err != nil {
		return err
	}
	for _, d := range docs {
		if d.err != nil {
			rep.Errors = append(rep.Errors, *d.err)
		}
	}
	return nil
}

func decodeOne(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed JSON: more than one value")
	}
	return v, nil
}

// jsonErr describes a JSON error by position only: encoding/json quotes input characters.
func jsonErr(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("malformed JSON at byte %d", se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("malformed JSON: unexpected end of input")
	}
	return errors.New("malformed JSON")
}

// encode writes JSON with object keys sorted, except resourceType, which comes first as
// FHIR JSON examples have it; HTML characters are not escaped.
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := encodeTo(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func encodeTo(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			if k != "resourceType" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		if _, ok := x["resourceType"]; ok {
			keys = append([]string{"resourceType"}, keys...)
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encodeScalar(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := encodeTo(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, item := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encodeTo(b, item); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		return encodeScalar(b, v)
	}
	return nil
}

func encodeScalar(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

func (p *Processor) runNDJSON(ctx context.Context, r io.Reader, w io.Writer, reverse bool) (*Report, error) {
	rep := newReport()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxNDJSONLine)
	bw := bufio.NewWriter(w)
	var docs []*doc
	flush := func() error {
		if err := p.batch(ctx, docs, resolver{}, reverse, rep); err != nil {
			return err
		}
		for _, d := range docs {
			if d.err == nil {
				b, _ := encode(d.res)
				bw.Write(b)
				bw.WriteByte('\n')
			}
		}
		docs = docs[:0]
		return nil
	}
	for line := 0; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		v, err := decodeOne(sc.Bytes())
		d := newDoc(line, nil, v)
		if err != nil {
			d.err = &ResourceError{Index: line, Reason: err.Error()}
		}
		docs = append(docs, d)
		if len(docs) == ChunkSize {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errs.New(errs.InvalidArgument, "NDJSON: %s", ndjsonErr(err))
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return rep, bw.Flush()
}

func ndjsonErr(err error) string {
	if errors.Is(err, bufio.ErrTooLong) {
		return fmt.Sprintf("a line is longer than %d bytes", MaxNDJSONLine)
	}
	return "read failed"
}
