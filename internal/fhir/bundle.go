package fhir

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/phivault/tokenizer/internal/errs"
)

// bundleFields are the Bundle's own elements (FHIR R4) other than entry. Paging links
// can carry search parameters (identifiers, names), a signature no longer matches the
// content, and the Bundle's id, identifier, timestamp, meta and implicitRules are the
// source's: they are dropped, with every "_element" sibling. type, total and language
// pass. Anything else is refused: it would pass through unexamined.
var bundleFields = map[string]fieldRule{"resourceType": keepString, "type": keepString, "total": keepNumber, "language": keepString,
	"id": drop, "link": drop, "signature": drop, "identifier": drop, "timestamp": drop, "meta": drop, "implicitRules": drop}

// keepBundleField says whether a Bundle-level element is written out, or why the
// Bundle is refused.
func keepBundleField(f field) (bool, error) {
	rule := bundleFields[f.key]
	if strings.HasPrefix(f.key, "_") {
		rule = drop
	}
	obj := map[string]any{f.key: f.val}
	if rule == 0 {
		return false, invalid("Bundle.%s: not an element of Bundle (it would pass through unexamined)", f.key)
	}
	if path, why := scrubObject(obj, "Bundle", map[string]fieldRule{f.key: rule}); path != "" {
		return false, invalid("%s: %s", path, why)
	}
	return rule != drop, nil
}

// writeBundleFields writes the Bundle-level elements that pass (keepBundleField).
func writeBundleFields(out *jsonOut, fields []field) error {
	for _, f := range fields {
		keep, err := keepBundleField(f)
		if err != nil {
			return err
		}
		if keep {
			if err := out.field(f.key, f.val); err != nil {
				return err
			}
		}
	}
	return nil
}

type field struct {
	key string
	val any
}

// jsonOut writes one JSON object field by field.
type jsonOut struct {
	bw     *bufio.Writer
	open   bool
	fields int
}

func (o *jsonOut) start() {
	if !o.open {
		o.bw.WriteByte('{')
		o.open = true
	}
}

func (o *jsonOut) key(k string) {
	o.start()
	if o.fields > 0 {
		o.bw.WriteByte(',')
	}
	o.fields++
	kb, _ := json.Marshal(k)
	o.bw.Write(kb)
	o.bw.WriteByte(':')
}

func (o *jsonOut) field(k string, v any) error {
	b, err := encode(v)
	if err != nil {
		return err
	}
	o.key(k)
	_, err = o.bw.Write(b)
	return err
}

func invalid(format string, args ...any) error {
	return errs.New(errs.InvalidArgument, format, args...)
}

// runJSON reads one top-level object; an "entry" array is streamed as a Bundle.
func (p *Processor) runJSON(ctx context.Context, r io.Reader, w io.Writer, reverse bool) (*Report, error) {
	rep := newReport()
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		if err != nil {
			return nil, invalid("%s", jsonErr(err))
		}
		return nil, invalid("not a FHIR resource: not a JSON object")
	}
	out := &jsonOut{bw: bufio.NewWriter(w)}
	var head []field
	seen := map[string]bool{}
	resourceType, streamed := "", false
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, invalid("%s", jsonErr(err))
		}
		key, _ := kt.(string)
		if seen[key] {
			// A reader keeps one copy of a repeated key, often the last: a second
			// "entry" or "resourceType" would pass through unprocessed (names no value).
			return nil, invalid("malformed resource: an element appears twice at the top level")
		}
		seen[key] = true
		if key == "entry" && !streamed {
			if resourceType != "" && resourceType != "Bundle" {
				return nil, invalid("entry is only allowed in a Bundle")
			}
			if err := writeBundleFields(out, head); err != nil {
				return nil, err
			}
			out.start()
			if err := p.streamEntries(ctx, dec, out, reverse, rep); err != nil {
				return nil, err
			}
			streamed = true
			continue
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, invalid("%s", jsonErr(err))
		}
		if key == "resourceType" {
			resourceType, _ = v.(string)
		}
		if len(head) >= 4*maxBundleFields {
			return nil, invalid("too many top-level elements")
		}
		switch {
		case !streamed:
			head = append(head, field{key, v})
		default:
			if err := writeBundleFields(out, []field{{key, v}}); err != nil {
				return nil, err
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, invalid("%s", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("malformed JSON: more than one value")
	}
	if streamed {
		if resourceType != "Bundle" {
			return nil, invalid("entry is only allowed in a Bundle")
		}
		out.bw.WriteByte('}')
		return rep, out.bw.Flush()
	}
	return rep, p.single(ctx, head, out, reverse, rep)
}

// single processes a lone resource, or an empty Bundle.
func (p *Processor) single(ctx context.Context, head []field, out *jsonOut, reverse bool, rep *Report) error {
	obj := make(map[string]any, len(head))
	for _, f := range head {
		obj[f.key] = f.val
	}
	if obj["resourceType"] == "Bundle" {
		if err := writeBundleFields(out, head); err != nil {
			return err
		}
		out.start()
		out.bw.WriteByte('}')
		return out.bw.Flush()
	}
	d := newDoc(0, nil, obj)
	if err := p.batch(ctx, []*doc{d}, resolver{}, reverse, rep); err != nil {
		return err
	}
	if d.err != nil {
		return nil // reported; nothing to write
	}
	b, err := encode(d.res)
	if err != nil {
		return err
	}
	out.bw.Write(b)
	return out.bw.Flush()
}

// streamEntries reads Bundle.entry one entry at a time and processes ChunkSize at once.
func (p *Processor) streamEntries(ctx context.Context, dec *json.Decoder, out *jsonOut, reverse bool, rep *Report) error {
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return invalid("Bundle.entry is not an array")
	}
	out.key("entry")
	out.bw.WriteByte('[')
	rs, written := bundleResolver(ctx), 0
	var docs []*doc
	flush := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.batch(ctx, docs, rs, reverse, rep); err != nil {
			return err
		}
		for _, d := range docs {
			if d.err != nil {
				continue
			}
			delete(d.entry, "link")
			b, err := encode(d.entry)
			if err != nil {
				return err
			}
			if written > 0 {
				out.bw.WriteByte(',')
			}
			written++
			out.bw.Write(b)
		}
		docs = docs[:0]
		return nil
	}
	for i := 0; dec.More(); i++ {
		var v any
		if err := dec.Decode(&v); err != nil {
			return invalid("Bundle.entry[%d]: %s", i, jsonErr(err))
		}
		entry, _ := v.(map[string]any)
		d := newDoc(i, entry, entry["resource"])
		if entry == nil {
			d.err = &ResourceError{Index: i, Path: fmt.Sprintf("Bundle.entry[%d]", i), Reason: "entry is not an object"}
		} else if entry["resource"] == nil {
			d.err = &ResourceError{Index: i, Path: fmt.Sprintf("Bundle.entry[%d]", i), Reason: "entry has no resource"}
		}
		docs = append(docs, d)
		if len(docs) == ChunkSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != nil {
		return invalid("Bundle.entry: %s", jsonErr(err))
	}
	out.bw.WriteByte(']')
	return nil
}
