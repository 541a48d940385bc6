package fhir

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/phivault/tokenizer/internal/errs"
)

// Security labels from the HL7 v3 ObservationValue code system, set in meta.security of
// de-identified resources and removed on re-identification.
const (
	LabelSystem         = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	LabelPseudonymized  = "PSEUDED"
	LabelRedacted       = "REDACTED"
	LabelMasked         = "MASKED"
	LabelAbstracted     = "ABSTRED"
	labelPseudonymDisp  = "pseudonymized"
	labelRedactedDisp   = "redacted"
	labelMaskedDisp     = "masked"
	labelAbstractedDisp = "abstracted"
)

var labelDisplay = map[string]string{
	LabelPseudonymized: labelPseudonymDisp, LabelRedacted: labelRedactedDisp,
	LabelMasked: labelMaskedDisp, LabelAbstracted: labelAbstractedDisp,
}

func labelOf(k opKind) string {
	switch k {
	case opRedact:
		return LabelRedacted
	case opMask:
		return LabelMasked
	case opGeneralize:
		return LabelAbstracted
	}
	return LabelPseudonymized
}

func verbOf(k opKind) string {
	switch k {
	case opMask:
		return "masked"
	case opGeneralize:
		return "generalized"
	}
	return "redacted"
}

// planIDs plans the ids and literal references that the profile maps to tokens: the
// Resource.id of tokenized types, every Reference.reference naming one (Type/id, absolute
// URL, urn:uuid) and the entry's fullUrl, request.url and response.location.
func (p *Processor) planIDs(d *doc, root *node, rs resolver, reverse bool) {
	cls := p.prof.idClass
	if id, ok := d.res["id"].(string); ok && p.prof.idTokenized(d.typ) {
		n := &node{parent: root, key: "id", name: "id", index: -1, typ: "System.String", val: id}
		d.claims[n.slot()] = true
		d.ops = append(d.ops, op{kind: opID, n: n, class: cls, subject: d.idSubject(ref{typ: d.typ, id: id}, rs, reverse), rule: -1})
	}
	root.walk(func(n *node) bool {
		if n.typ != "Reference" {
			return true
		}
		m, _ := n.val.(map[string]any)
		if s, ok := m["reference"].(string); ok {
			p.planRef(d, &node{parent: n, key: "reference", name: "reference", index: -1, typ: "string", val: s}, rs, reverse)
		}
		return false
	})
	if d.entry == nil || cls == "" {
		return
	}
	en := &node{typ: "Bundle.entry", name: "entry", index: -1, val: d.entry}
	p.planRefAt(d, en, "fullUrl", rs, reverse)
	for _, k := range []string{"request", "response"} {
		if m, ok := d.entry[k].(map[string]any); ok {
			sub := &node{parent: en, key: k, name: k, index: -1, typ: "Bundle.entry." + k, val: m}
			p.planRefAt(d, sub, map[string]string{"request": "url", "response": "location"}[k], rs, reverse)
		}
	}
}

// namesPatient reports whether reference string s, at node n, may name a Patient: it
// mentions the type, or its Reference says type Patient.
func namesPatient(s string, n *node) bool {
	if strings.Contains(s, "Patient") {
		return true
	}
	m, _ := n.parent.val.(map[string]any)
	t, _ := m["type"].(string)
	return t == "Patient" || strings.HasSuffix(t, "/Patient")
}

func (p *Processor) planRefAt(d *doc, parent *node, key string, rs resolver, reverse bool) {
	if s, ok := parent.val.(map[string]any)[key].(string); ok {
		p.planRef(d, &node{parent: parent, key: key, name: key, index: -1, typ: "uri", val: s}, rs, reverse)
	}
}

func (p *Processor) planRef(d *doc, n *node, rs resolver, reverse bool) {
	s := n.val.(string)
	if strings.HasPrefix(s, "#") {
		d.claims[n.slot()] = true // a contained resource: local, kept as it is
		return
	}
	r, ok := parseRef(s)
	if !ok && p.prof.idClass != "" && !reverse && n.parent != nil && n.parent.typ == "Reference" && namesPatient(s, n) {
		// A reference to a Patient the service cannot map (a search, a fragment, an
		// operation, an odd path) would keep the patient's id as it is: fail closed.
		d.fail(n, "a reference to a Patient that is not a literal Type/id reference cannot be de-identified")
		return
	}
	if !ok || p.prof.idClass == "" || r.typ != "" && !p.prof.idTokenized(r.typ) {
		return
	}
	d.claims[n.slot()] = true
	d.ops = append(d.ops, op{kind: opRef, n: n, ref: r, class: p.prof.idClass, subject: d.idSubject(r, rs, reverse), rule: -1})
}

// idSubject is the subject an id token belongs to: the patient for a Patient's id and for
// references that name a Patient (directly, or a urn:uuid of a Patient entry seen before),
// none for every other id. It depends only on the id and its target, so that every
// occurrence of one id (Resource.id, fullUrl, references) is the same item even when the
// token service scopes static tokens by subject. On reversal it is unknown ("").
func (d *doc) idSubject(r ref, rs resolver, reverse bool) string {
	switch {
	case reverse:
		return ""
	case r.typ == "Patient":
		return patientKey(r.id)
	case r.prefix == "urn:uuid:":
		return rs[r.String()]
	}
	return ""
}

type itemKey struct {
	class, value, subject string
	id, bound             bool
}

// opValue is the string a token op sends: the leaf, or the id part of a reference.
func opValue(o *op) string {
	if o.kind == opRef {
		return o.ref.id
	}
	s, _ := o.n.val.(string)
	return s
}

// runTokens sends every pending token op of the batch in one call (duplicates merged) and
// records each outcome on its op.
func (p *Processor) runTokens(ctx context.Context, docs []*doc, reverse bool, rep *Report) error {
	index := map[itemKey]int{}
	var items []Item
	for _, d := range docs {
		for i := range d.ops {
			o := &d.ops[i]
			if d.err != nil || o.kind != opToken && o.kind != opID && o.kind != opRef {
				continue
			}
			k := itemKey{o.class, opValue(o), o.subject, o.kind != opToken, o.bound}
			at, ok := index[k]
			if !ok {
				at = len(items)
				index[k] = at
				items = append(items, Item{Class: k.class, Value: k.value, Subject: k.subject, ID: k.id, Bound: k.bound})
			}
			o.item = at
			rep.Classes[o.class] = true
		}
	}
	if len(items) == 0 {
		return nil
	}
	out := make([]Revealed, len(items))
	if reverse {
		res, err := p.tok.Detokenize(ctx, items)
		if err != nil {
			return err
		}
		copy(out, res)
	} else {
		res, err := p.tok.Tokenize(ctx, items)
		if err != nil {
			return err
		}
		for i, r := range res {
			out[i] = Revealed{Value: r.Token, Err: r.Err}
		}
	}
	if len(out) != len(items) {
		return errs.New(errs.Internal, "token service answered %d items for %d", len(out), len(items))
	}
	for _, d := range docs {
		for i := range d.ops {
			if o := &d.ops[i]; d.err == nil && (o.kind == opToken || o.kind == opID || o.kind == opRef) {
				o.result = out[o.item]
				if o.result.Err != nil {
					d.fail(o.n, o.result.Err.Error())
				}
			}
		}
	}
	return nil
}

// apply carries out the planned ops of one resource; shift is the signed day offset and
// haveShift whether it is known.
func (p *Processor) apply(d *doc, shift int, haveShift, reverse bool) {
	for i := range d.ops {
		o := &d.ops[i]
		if d.err != nil {
			return
		}
		switch o.kind {
		case opToken, opID, opRef:
			p.applyToken(d, o, reverse)
			continue
		case opShift:
			if !haveShift && !reverse {
				d.fail(o.n, "no date-shift offset for the patient")
				continue
			}
			if !haveShift {
				d.unrestored = append(d.unrestored, Unrestored{Index: d.index, Path: o.n.location(), Reason: "no date-shift offset for this patient: date left shifted"})
				continue
			}
			s, err := shiftDate(o.n.val.(string), shift)
			if err != nil {
				d.fail(o.n, "date shift: "+err.Error())
				continue
			}
			o.n.set(s)
		case opRedact:
			o.n.set(redacted)
		case opMask:
			m, err := p.tok.Mask(o.class, o.n.val.(string))
			if err != nil {
				d.fail(o.n, "mask: "+err.Error())
				continue
			}
			o.n.set(m)
		case opGeneralize:
			if !p.generalize(d, o.n) {
				continue
			}
		}
		d.labels[labelOf(o.kind)] = true
	}
}

func (p *Processor) applyToken(d *doc, o *op, reverse bool) {
	r := o.result
	if reverse && r.Outcome != RevealClear {
		why := "not revealed: the caller may not detokenize class " + o.class
		if r.Outcome == RevealMasked && o.kind == opToken {
			o.n.set(r.Value)
			why = "masked reveal: the caller may only see class " + o.class + " masked"
		}
		d.unrestored = append(d.unrestored, Unrestored{Index: d.index, Path: o.n.location(), Reason: why})
		return
	}
	switch o.kind {
	case opToken, opID:
		o.n.set(r.Value)
	case opRef:
		nr := o.ref
		nr.id = r.Value
		o.n.set(nr.String())
	}
	d.labels[LabelPseudonymized] = true
}

// generalize applies ZIP3, year-only and 90+ rules to one node; false when nothing changed.
func (p *Processor) generalize(d *doc, n *node) bool {
	if m, ok := n.val.(map[string]any); ok { // an age
		v, err := strconv.ParseFloat(numText(m["value"]), 64)
		years, known := ageYears(m)
		if err != nil || !known {
			d.fail(n, "generalize: an age without a value in a UCUM time unit (a, mo, wk, d, h, min)")
			return false
		}
		if v*years <= 89 {
			return false
		}
		m["value"], m["comparator"], m["unit"] = json.Number("90"), ">=", "years"
		m["system"], m["code"] = "http://unitsofmeasure.org", "a"
		return true
	}
	s := n.val.(string)
	if n.name == "postalCode" {
		z, ok := p.prof.zip3Of(s)
		if !ok {
			n.set(redacted)
			d.labels[LabelRedacted] = true
			return false
		}
		n.set(z)
		return true
	}
	if n.name == "birthDate" {
		old, err := impliesAgeOver89(s, p.now())
		if err != nil {
			d.fail(n, "generalize: "+err.Error())
			return false
		}
		if old {
			n.set(redacted)
			return true
		}
	}
	y, err := yearOf(s)
	if err != nil {
		d.fail(n, "generalize: "+err.Error())
		return false
	}
	n.set(y)
	return true
}

// ageYears is the length of an age's unit in years (UCUM code, else the unit text).
func ageYears(m map[string]any) (float64, bool) {
	unit, _ := m["code"].(string)
	if unit == "" {
		unit, _ = m["unit"].(string)
	}
	y, ok := map[string]float64{
		"a": 1, "yr": 1, "year": 1, "years": 1, "mo": 1.0 / 12, "month": 1.0 / 12, "months": 1.0 / 12,
		"wk": 7 / 365.25, "week": 7 / 365.25, "weeks": 7 / 365.25, "d": 1 / 365.25, "day": 1 / 365.25, "days": 1 / 365.25,
		"h": 1 / 8766.0, "min": 1 / 525960.0,
	}[unit]
	return y, ok
}

func numText(v any) string {
	switch x := v.(type) {
	case json.Number:
		return string(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return ""
}

type redactedMark struct{}

// redacted marks a removed leaf until compact deletes it.
var redacted any = redactedMark{}

// dataAbsent is what a required element becomes when a profile removed all of it: the
// data-absent-reason extension with code masked ("cannot be disclosed for privacy or
// security reasons"), so that the resource stays valid.
func dataAbsent() map[string]any {
	return map[string]any{"extension": []any{map[string]any{
		"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}}}
}

// compact deletes redacted leaves (and their _element extension siblings) and the
// objects and arrays left empty, which FHIR JSON does not allow; a required element left
// empty gets the data-absent-reason extension instead. typ is obj's FHIR type.
func compact(obj map[string]any, typ string) {
	for k, v := range obj {
		e, _, ctyp := lookupElem(typ, k)
		required := e != nil && e.required
		switch x := v.(type) {
		case redactedMark:
			delete(obj, k)
			delete(obj, "_"+k)
			if required {
				obj["_"+k] = dataAbsent()
			}
		case map[string]any:
			compact(x, childType(ctyp, x))
			emptyExtension(x, childType(ctyp, x))
			if len(x) == 0 {
				delete(obj, k)
				if required {
					obj[k] = dataAbsent()
				}
			}
		case []any:
			compactList(obj, k, x, ctyp, required)
		}
	}
}

// emptyExtension clears an Extension left with neither a value nor extensions (its value
// was redacted): FHIR does not allow one, so it goes with its url.
func emptyExtension(m map[string]any, typ string) {
	if typ != "Extension" {
		return
	}
	for k := range m {
		if k == "extension" || strings.HasPrefix(k, "value") {
			return
		}
	}
	clear(m)
}

func compactList(obj map[string]any, k string, x []any, typ string, required bool) {
	kept := x[:0]
	ext, _ := obj["_"+k].([]any)
	var keptExt []any
	for i, item := range x {
		if m, ok := item.(map[string]any); ok {
			compact(m, childType(typ, m))
			emptyExtension(m, childType(typ, m))
			if len(m) == 0 {
				continue
			}
		}
		if item == redacted {
			continue
		}
		kept = append(kept, item)
		if i < len(ext) {
			keptExt = append(keptExt, ext[i])
		}
	}
	switch {
	case len(kept) == 0 && required && !isPrimitive(typ):
		obj[k] = []any{dataAbsent()}
	case len(kept) == 0:
		delete(obj, k)
		delete(obj, "_"+k)
	default:
		obj[k] = kept
		if ext != nil {
			obj["_"+k] = keptExt
		}
	}
}

// addLabels appends the security labels for what was done, once each.
func addLabels(res map[string]any, labels map[string]bool) {
	if len(labels) == 0 {
		return
	}
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		res["meta"] = meta
	}
	sec, _ := meta["security"].([]any)
	for _, code := range []string{LabelPseudonymized, LabelRedacted, LabelMasked, LabelAbstracted} {
		if labels[code] && !hasLabel(res, code) {
			sec = append(sec, map[string]any{"system": LabelSystem, "code": code, "display": labelDisplay[code]})
		}
	}
	meta["security"] = sec
}

func hasLabel(res map[string]any, code string) bool {
	meta, _ := res["meta"].(map[string]any)
	sec, _ := meta["security"].([]any)
	for _, c := range sec {
		if m, ok := c.(map[string]any); ok && m["system"] == LabelSystem && m["code"] == code {
			return true
		}
	}
	return false
}

// removeLabels drops the de-identification labels, and meta if nothing else is left.
func removeLabels(res map[string]any) {
	meta, _ := res["meta"].(map[string]any)
	sec, ok := meta["security"].([]any)
	if !ok {
		return
	}
	kept := sec[:0]
	for _, c := range sec {
		if m, ok := c.(map[string]any); ok && m["system"] == LabelSystem && labelDisplay[str(m["code"])] != "" {
			continue
		}
		kept = append(kept, c)
	}
	if len(kept) == 0 {
		delete(meta, "security")
	} else {
		meta["security"] = kept
	}
	if len(meta) == 0 {
		delete(res, "meta")
	}
}

func str(v any) string { s, _ := v.(string); return s }
