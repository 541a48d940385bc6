package fhir

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/phivault/tokenizer/internal/errs"
)

// ResourceError is a per-resource failure: the resource is left out of the output. It
// names the position, type and path, never a value.
type ResourceError struct {
	Index        int    `json:"index"`
	ResourceType string `json:"resourceType,omitempty"`
	Path         string `json:"path,omitempty"`
	Reason       string `json:"reason"`
}

func (e *ResourceError) Error() string {
	return fmt.Sprintf("resource %d (%s) at %s: %s", e.Index, e.ResourceType, e.Path, e.Reason)
}

// Unrestored names a path that re-identification could not give back (redacted,
// generalized or masked by the profile, or withheld from the caller).
type Unrestored struct {
	Index  int    `json:"index"`
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Report summarizes one request for the response and the audit event.
type Report struct {
	Resources  int             // resources processed successfully
	Errors     []ResourceError // resources left out
	Unrestored []Unrestored    // re-identification only
	Classes    map[string]bool // token classes used
	Subjects   map[string]bool // patient subjects touched ("Patient/<id>"); digest before logging
}

func newReport() *Report {
	return &Report{Classes: map[string]bool{}, Subjects: map[string]bool{}}
}

// Processor applies one profile with a token service and an offset source. It is safe for
// concurrent use if they are.
type Processor struct {
	prof *Profile
	tok  Tokenizer
	offs Offsets
	now  func() time.Time
}

// NewProcessor returns a Processor; now gives the reference time for ages (nil: time.Now).
func NewProcessor(prof *Profile, tok Tokenizer, offs Offsets, now func() time.Time) *Processor {
	if now == nil {
		now = time.Now
	}
	return &Processor{prof: prof, tok: tok, offs: offs, now: now}
}

// Profile returns the profile the processor applies.
func (p *Processor) Profile() *Profile { return p.prof }

// resolver maps urn:uuid fullUrls of Patient entries to subjects, across a Bundle.
type resolver map[string]string

func (r resolver) resolve(s string) string { return r[s] }

// newDoc checks that v is a resource this package can process.
func newDoc(index int, entry map[string]any, v any) *doc {
	d := &doc{index: index, entry: entry, claims: map[slot]bool{}, selected: map[slot]bool{}, labels: map[string]bool{}}
	res, ok := v.(map[string]any)
	if !ok {
		d.err = &ResourceError{Index: index, Reason: "not a FHIR resource: not a JSON object"}
		return d
	}
	d.res = res
	t, ok := res["resourceType"].(string)
	switch {
	case !ok:
		d.err = &ResourceError{Index: index, Reason: "not a FHIR resource: no resourceType"}
	case !isResourceType(t):
		d.err = &ResourceError{Index: index, Reason: "unsupported resource type (supported: " + strings.Join(SupportedTypes(), ", ") + ")"}
	default:
		d.err = checkContained(index, t, res)
	}
	d.typ = t
	return d
}

// checkContained refuses a resource whose contained resources this package cannot
// process: an unknown type would pass through unmodelled, names, telecom and references
// to the patient included (fail closed, like an unsupported resource).
func checkContained(index int, typ string, res map[string]any) *ResourceError {
	v, ok := res["contained"]
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return &ResourceError{Index: index, ResourceType: typ, Path: typ + ".contained", Reason: "not a JSON array"}
	}
	for i, c := range list {
		m, _ := c.(map[string]any)
		ct, _ := m["resourceType"].(string)
		if m == nil || !isResourceType(ct) {
			return &ResourceError{Index: index, ResourceType: typ, Path: fmt.Sprintf("%s.contained[%d]", typ, i),
				Reason: "unsupported contained resource type (supported: " + strings.Join(SupportedTypes(), ", ") + ")"}
		}
	}
	return nil
}

// SupportedTypes lists the resource types the model knows, sorted; others are refused
// (the caller's type name is not echoed: it is input).
func SupportedTypes() []string {
	var out []string
	for t := range model {
		if isResourceType(t) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// Deidentify de-identifies a batch of resources in place: one Tokenize call and one
// Offsets call for the whole batch. Failed resources carry their error.
func (p *Processor) deidentify(ctx context.Context, docs []*doc, rs resolver, rep *Report) error {
	// The batch's Patient entries first, so that a urn:uuid reference to a Patient later
	// in the batch names its patient too (its token and date shift are the patient's).
	for _, d := range docs {
		if d.err == nil && d.typ == "Patient" && d.entry != nil {
			if u, ok := d.entry["fullUrl"].(string); ok {
				if s := subjectOf(d.res, d.typ, rs.resolve); s != "" {
					if prev, seen := rs[u]; seen && prev != s {
						// FHIR bdl-7: one fullUrl, one resource. Which patient would its
						// references name? Neither: the later entry fails.
						d.err = &ResourceError{Index: d.index, ResourceType: d.typ, Path: "Bundle.entry.fullUrl", Reason: "the same fullUrl as an earlier entry of another patient (FHIR bdl-7)"}
						continue
					}
					rs.remember(u, s)
				}
			}
		}
	}
	for _, d := range docs {
		if d.err != nil {
			continue
		}
		d.subject = subjectOf(d.res, d.typ, rs.resolve)
		root := rootNode(d.res)
		if bad := mistyped(root); bad != nil {
			d.fail(bad, "the JSON value does not match the element's FHIR type")
			continue
		}
		if path, why := unmodelled(root); path != "" {
			d.err = &ResourceError{Index: d.index, ResourceType: d.typ, Path: path, Reason: why}
			continue
		}
		if dropPrimitiveExtensions(root) {
			d.labels[LabelRedacted] = true
		}
		if path, why := d.scrubEntry(); path != "" {
			d.err = &ResourceError{Index: d.index, ResourceType: d.typ, Path: path, Reason: why}
			continue
		}
		p.planIDs(d, root, rs, false)
		p.planRules(d, root, false)
	}
	if err := p.runTokens(ctx, docs, false, rep); err != nil {
		return err
	}
	offs, err := p.offsets(ctx, docs, true)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if d.err == nil {
			off, ok := offs[d.subject]
			p.apply(d, off, ok, false)
		}
		if d.err == nil {
			compact(d.res, d.typ)
			addLabels(d.res, d.labels)
			rep.note(d)
		}
	}
	return nil
}

// reidentify reverses deidentify: ids and references first (they name the subject), then
// the rules' tokens and dates.
func (p *Processor) reidentify(ctx context.Context, docs []*doc, rs resolver, rep *Report) error {
	for _, d := range docs {
		if d.err != nil {
			continue
		}
		root := rootNode(d.res)
		if bad := mistyped(root); bad != nil {
			d.fail(bad, "the JSON value does not match the element's FHIR type")
			continue
		}
		p.planIDs(d, root, rs, true)
	}
	if err := p.runTokens(ctx, docs, true, rep); err != nil {
		return err
	}
	for _, d := range docs {
		if d.err != nil {
			continue
		}
		p.apply(d, 0, false, true)
		d.ops = d.ops[:0]
		d.subject = subjectOf(d.res, d.typ, rs.resolve)
		if d.typ == "Patient" && d.entry != nil {
			if u, ok := d.entry["fullUrl"].(string); ok && d.subject != "" {
				rs.remember(u, d.subject)
			}
		}
		p.reportRedactions(d)
		removeLabels(d.res) // before the rules, so that they never see the labels
		d.claims = map[slot]bool{}
		root := rootNode(d.res)
		p.planIDs(d, root, rs, true) // claims the revealed ids and references again
		d.ops = d.ops[:0]
		p.planRules(d, root, true)
	}
	if err := p.runTokens(ctx, docs, true, rep); err != nil {
		return err
	}
	offs, err := p.offsets(ctx, docs, false)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if d.err != nil {
			continue
		}
		off, ok := offs[d.subject]
		p.apply(d, -off, ok, true)
		rep.note(d)
	}
	return nil
}

func (r *Report) note(d *doc) {
	if d.err != nil {
		return
	}
	r.Resources++
	if d.subject != "" {
		r.Subjects[d.subject] = true
	}
	for _, o := range d.ops {
		if o.class != "" && o.kind == opMask {
			r.Classes[o.class] = true
		}
	}
	r.Unrestored = append(r.Unrestored, d.unrestored...)
}

// reportRedactions lists, for a resource marked REDACTED, the redact rules that may have
// removed elements from it.
func (p *Processor) reportRedactions(d *doc) {
	if !hasLabel(d.res, LabelRedacted) {
		return
	}
	for _, r := range append(p.prof.rules, p.prof.defaultRule()...) {
		if r.action != ActRedact && !(r.action == ActGeneralize && r.path != nil) {
			continue
		}
		path := "default (identifying types not matched by a rule)"
		if r.path != nil {
			if r.path.root != "" && r.path.root != "Resource" && r.path.root != d.typ {
				continue
			}
			path = r.path.String()
		}
		d.unrestored = append(d.unrestored, Unrestored{Index: d.index, Path: path, Reason: "may have been removed by rule " + ruleName(r.index)})
	}
}

// mistyped finds the first element whose JSON value contradicts the model (a string where
// a HumanName belongs): such a resource is refused rather than half understood.
// unmodelled finds the first element of n's subtree that the model does not describe:
// a key that is no element of its type (a misspelling, an element of another FHIR
// version, a choice of a type the service does not model), an "_element" sibling of
// something that is not a primitive element, or a primitive of the wrong JSON type. Such
// an element would pass through unexamined, so its resource is refused instead (fail
// closed). It returns the path and the problem, never the value.
func unmodelled(n *node) (string, string) {
	obj, ok := n.val.(map[string]any)
	if !ok || model[n.typ] == nil {
		return "", ""
	}
	for k, v := range obj {
		switch {
		case k == "resourceType" && isResourceType(n.typ):
			continue
		case strings.HasPrefix(k, "_"):
			if e, _, typ := lookupElem(n.typ, k[1:]); e == nil || !isPrimitive(typ) {
				return n.location() + "." + k, "not an element of " + n.typ + " in FHIR R4 as modelled here"
			}
			continue
		}
		e, _, typ := lookupElem(n.typ, k)
		if e == nil || typ != "Resource" && !isPrimitive(typ) && model[typ] == nil {
			return n.location() + "." + k, "not an element of " + n.typ + " in FHIR R4 as modelled here"
		}
		if isPrimitive(typ) && !primitiveJSONOK(typ, v) {
			return n.location() + "." + k, "the JSON value does not match the element's FHIR type"
		}
	}
	for _, c := range n.children() {
		if path, why := unmodelled(c); path != "" {
			return path, why
		}
	}
	return "", ""
}

// scrubEntry removes the parts of a Bundle entry no rule examines and that can carry
// identifiers (the conditional headers' search strings, a response's OperationOutcome,
// the entry's extensions), and returns the path of a request URL with search parameters
// ("" when none): a conditional request cannot be de-identified, so the entry fails.
func (d *doc) scrubEntry() (string, string) {
	if d.entry == nil {
		return "", ""
	}
	if path, why := scrubObject(d.entry, "Bundle.entry", entryFields); path != "" {
		return path, why
	}
	if u, ok := d.entry["fullUrl"]; ok {
		if s, isStr := u.(string); !isStr || strings.Contains(s, "?") {
			return "Bundle.entry.fullUrl", "not a resource's URL (a search URL's parameters are not de-identified)"
		}
	}
	for _, part := range []struct {
		key    string
		fields map[string]fieldRule
	}{{"request", requestFields}, {"response", responseFields}, {"search", searchFields}} {
		v, ok := d.entry[part.key]
		if !ok {
			continue
		}
		obj, isObj := v.(map[string]any)
		if !isObj {
			return "Bundle.entry." + part.key, "the JSON value does not match the element's FHIR type"
		}
		if path, why := scrubObject(obj, "Bundle.entry."+part.key, part.fields); path != "" {
			return path, why
		}
	}
	if req, ok := d.entry["request"].(map[string]any); ok {
		if u, _ := req["url"].(string); strings.Contains(u, "?") {
			return "Bundle.entry.request.url", "a conditional request URL carries search parameters, which are not de-identified"
		}
	}
	return "", ""
}

// fieldRule says what de-identification does with an element of a Bundle entry (or of
// the Bundle itself): keep it (a primitive of the JSON kind given), or drop it.
type fieldRule int

const (
	keepString fieldRule = iota + 1
	keepNumber
	keepAny // checked elsewhere: resource, request, response, search
	drop
)

// The elements of Bundle.entry and its parts (FHIR R4). Ids, extensions and "_element"
// siblings are dropped everywhere; anything else fails the entry, naming it: it would
// pass through unexamined.
var (
	entryFields    = map[string]fieldRule{"fullUrl": keepAny, "resource": keepAny, "search": keepAny, "request": keepAny, "response": keepAny, "link": drop}
	requestFields  = map[string]fieldRule{"method": keepString, "url": keepString, "ifNoneExist": drop, "ifMatch": drop, "ifNoneMatch": drop, "ifModifiedSince": drop}
	responseFields = map[string]fieldRule{"status": keepString, "location": keepString, "outcome": drop, "etag": drop, "lastModified": drop}
	searchFields   = map[string]fieldRule{"mode": keepString, "score": keepNumber}
)

// scrubObject applies rules to obj's elements: drops what goes, and returns the path
// and reason of the first element that is not one of them or not of its JSON kind.
func scrubObject(obj map[string]any, path string, rules map[string]fieldRule) (string, string) {
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v, rule := obj[k], rules[k]
		switch {
		case k == "id" || k == "extension" || k == "modifierExtension" || strings.HasPrefix(k, "_"):
			rule = drop
		case rule == 0:
			return path + "." + k, "not an element of " + path + " (it would pass through unexamined)"
		}
		switch rule {
		case drop:
			delete(obj, k)
		case keepString:
			if _, ok := v.(string); !ok {
				return path + "." + k, "the JSON value does not match the element's FHIR type"
			}
		case keepNumber:
			if _, ok := v.(json.Number); !ok {
				if _, ok := v.(float64); !ok {
					return path + "." + k, "the JSON value does not match the element's FHIR type"
				}
			}
		}
	}
	return "", ""
}

// dropPrimitiveExtensions removes every "_element" sibling (a primitive's id and
// extensions) under n: no rule examines them, and they can carry anything (the exact
// birth time beside a birthDate, a name in a valueString), with or without the value
// they describe. Re-identification does not restore them.
func dropPrimitiveExtensions(n *node) bool {
	dropped := false
	n.walk(func(c *node) bool {
		if obj, ok := c.val.(map[string]any); ok {
			for k := range obj {
				if strings.HasPrefix(k, "_") {
					delete(obj, k)
					dropped = true
				}
			}
		}
		return true
	})
	return dropped
}

// primitiveJSONOK checks the JSON type of a primitive (each item, for a list).
func primitiveJSONOK(typ string, v any) bool {
	if list, ok := v.([]any); ok {
		for _, item := range list {
			if item != nil && !primitiveJSONOK(typ, item) {
				return false
			}
		}
		return true
	}
	base := typ
	for primitiveBase[base] != "" {
		base = primitiveBase[base]
	}
	switch base {
	case "boolean", "System.Boolean":
		_, ok := v.(bool)
		return ok
	case "integer", "decimal", "integer64", "System.Integer", "System.Decimal":
		switch v.(type) {
		case json.Number, float64:
			return true
		}
		return false
	}
	_, ok := v.(string)
	return ok
}

func mistyped(root *node) *node {
	var bad *node
	root.walk(func(n *node) bool {
		if bad != nil {
			return false
		}
		_, obj := n.val.(map[string]any)
		_, isArr := n.val.([]any)
		if n.parent != nil && (model[n.typ] != nil && !obj || isPrimitive(n.typ) && (obj || isArr)) {
			bad = n
		}
		return bad == nil
	})
	return bad
}

func itoa(i int) string { return strconv.Itoa(i) }

// offsets fetches the date-shift offsets of the subjects of docs that shift dates.
func (p *Processor) offsets(ctx context.Context, docs []*doc, create bool) (map[string]int, error) {
	seen := map[string]bool{}
	var subjects []string
	for _, d := range docs {
		if d.err != nil {
			continue
		}
		for _, o := range d.ops {
			if o.kind != opShift {
				continue
			}
			if d.subject == "" {
				if create {
					d.fail(o.n, "date shift needs the patient: the resource is in no patient compartment")
				} else {
					d.unrestored = append(d.unrestored, Unrestored{Index: d.index, Path: o.n.location(), Reason: "no patient subject: date left shifted"})
				}
				break
			}
			if !seen[d.subject] {
				seen[d.subject] = true
				subjects = append(subjects, d.subject)
			}
			break
		}
	}
	if len(subjects) == 0 {
		return nil, nil
	}
	m, err := p.offs.Offsets(ctx, subjects, create)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr // the caller left: CANCELED or DEADLINE_EXCEEDED, not an outage
		}
		return nil, errs.Wrap(errs.Unavailable, err, "date shift offsets unavailable")
	}
	return m, nil
}
