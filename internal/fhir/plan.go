package fhir

import (
	"encoding/json"
	"regexp"
)

// opKind is what happens to one leaf.
type opKind int

const (
	opToken      opKind = iota // tokenize (forward) or reveal (reverse) a string
	opID                       // Resource.id: tokenize or reveal the id
	opRef                      // a reference string: tokenize or reveal its id part
	opShift                    // move a date by the patient's offset (back, in reverse)
	opRedact                   // remove the leaf
	opMask                     // replace with the class's masked form
	opGeneralize               // ZIP3, year, 90+ (by the node's kind)
	opUnrestored               // reverse only: the leaf was generalized or masked
)

// op is one planned change to one node.
type op struct {
	kind    opKind
	n       *node
	class   string
	ref     ref
	subject string // subject of the token item
	bound   bool   // a value bound to the subject (a rule with subject: patient)
	item    int    // index of the token item in the batch
	result  Revealed
	rule    int
}

// doc is one resource being processed, with its plan.
type doc struct {
	index      int
	entry      map[string]any // its Bundle entry, nil for a bare resource
	res        map[string]any
	typ        string
	subject    string
	err        *ResourceError
	ops        []op
	claims     map[slot]bool
	selected   map[slot]bool
	labels     map[string]bool
	unrestored []Unrestored
}

func (d *doc) fail(n *node, reason string) {
	if d.err == nil {
		path := d.typ
		if n != nil {
			path = n.location()
		}
		d.err = &ResourceError{Index: d.index, ResourceType: d.typ, Path: path, Reason: reason}
	}
}

// claimed reports whether n or one of its ancestors was claimed by an earlier rule.
func (d *doc) claimed(n *node) bool {
	for ; n != nil && n.parent != nil; n = n.parent {
		if d.claims[n.slot()] {
			return true
		}
	}
	return false
}

// subtreeFree reports whether no node under n was claimed by an earlier rule.
func (d *doc) subtreeFree(n *node) bool {
	free := true
	n.walk(func(c *node) bool {
		if c != n && d.claims[c.slot()] {
			free = false
		}
		return free
	})
	return free
}

// looksLikeDate recognizes date values in elements the model does not type, so that a
// dateshift or generalize rule over unknown extensions does not leave dates behind.
var looksLikeDate = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(T|$)`)

func isDateType(n *node) bool {
	if _, ok := n.val.(string); !ok {
		return false
	}
	switch n.typ {
	case "date", "dateTime", "instant":
		return true
	case "":
		s, ok := n.val.(string)
		return ok && looksLikeDate.MatchString(s)
	}
	return false
}

func isTextType(n *node) bool {
	_, ok := n.val.(string)
	return ok && (n.typ == "string" || n.typ == "markdown" || n.typ == "" && !isDateType(n))
}

// isAgeQuantity recognizes an Age, or a Quantity in UCUM years.
func isAgeQuantity(n *node) bool {
	if n.typ == "Age" {
		return true
	}
	m, ok := n.val.(map[string]any)
	if !ok || !isA(n.typ, "Quantity") {
		return false
	}
	code, _ := m["code"].(string)
	unit, _ := m["unit"].(string)
	return code == "a" || unit == "a" || unit == "yr" || unit == "years" || unit == "year"
}

// identifying are the types the default action covers when no rule selected them.
var identifying = map[string]bool{
	"HumanName": true, "Identifier": true, "ContactPoint": true, "Address": true,
	"date": true, "dateTime": true, "instant": true,
}

// planRules applies every rule (first match wins per leaf) and then the default action,
// to the resource and to each contained resource as its own root.
func (p *Processor) planRules(d *doc, root *node, reverse bool) {
	roots := []*node{root}
	for _, c := range root.children() {
		if c.name == "contained" && isResourceType(c.typ) {
			roots = append(roots, c)
		}
	}
	for _, r := range p.prof.rules {
		for _, rt := range roots {
			for _, n := range r.path.eval(rt) {
				d.selected[n.slot()] = true
				p.applyRule(d, n, r, false, reverse)
			}
		}
	}
	if p.prof.def == nil {
		return
	}
	root.walk(func(n *node) bool {
		if n.parent != nil && (d.selected[n.slot()] || d.claims[n.slot()]) {
			return false
		}
		if identifying[n.typ] {
			p.applyRule(d, n, *p.prof.def, true, reverse)
			return false
		}
		return true
	})
}

// applyRule plans rule r on the unclaimed leaves under n. In default mode a tokenize
// default shifts dates, and leaves the action cannot handle are redacted (fail safe).
func (p *Processor) applyRule(d *doc, n *node, r rule, dflt, reverse bool) {
	if d.claimed(n) {
		return
	}
	if r.action == ActRedact && d.subtreeFree(n) {
		d.claims[n.slot()] = true // the whole element goes
		d.add(op{kind: opRedact, n: n, rule: r.index}, reverse)
		return
	}
	n.walk(func(c *node) bool {
		if c != n && d.claims[c.slot()] {
			return false
		}
		if r.action == ActGeneralize && isAgeQuantity(c) {
			d.claims[c.slot()] = true
			d.add(op{kind: opGeneralize, n: c, rule: r.index}, reverse)
			return false
		}
		if _, obj := c.val.(map[string]any); obj {
			return true
		}
		if r.action == ActKeep {
			d.claims[c.slot()] = true
			return false
		}
		if k, ok := leafOp(c, r.action, dflt); ok {
			d.claims[c.slot()] = true
			d.add(op{kind: k, n: c, class: r.class, subject: d.subject, bound: r.bind, rule: r.index}, reverse)
		}
		return false
	})
}

// leafOp decides what an action does to one leaf; ok false leaves it unclaimed.
func leafOp(c *node, a Action, dflt bool) (opKind, bool) {
	date, text := isDateType(c), isTextType(c)
	switch a {
	case ActRedact:
		return opRedact, true
	case ActTokenize, ActMask:
		kind := opToken
		if a == ActMask {
			kind = opMask
		}
		switch {
		case text:
			return kind, true
		case isNumeric(c):
			// A number under an identifying element (an Address's geolocation extension
			// holds latitude and longitude) cannot be tokenized: it goes.
			return opRedact, true
		case date && dflt && a == ActTokenize:
			return opShift, true
		case date && dflt:
			return opRedact, true
		}
	case ActDateShift:
		switch {
		case date:
			return opShift, true
		case text && dflt:
			return opRedact, true
		}
	case ActGeneralize:
		switch {
		case c.typ == "instant":
			return opRedact, true
		case date || text && c.name == "postalCode" && c.parent != nil && c.parent.typ == "Address":
			return opGeneralize, true
		case text && dflt:
			return opRedact, true
		}
	}
	return 0, false
}

// isNumeric recognizes a decimal or integer leaf.
func isNumeric(n *node) bool {
	switch n.val.(type) {
	case json.Number, float64:
		return true
	}
	return false
}

// add records a planned op; in reverse, what cannot be undone becomes a report entry.
func (d *doc) add(o op, reverse bool) {
	if reverse {
		switch o.kind {
		case opRedact:
			return // already absent; reported per rule
		case opMask, opGeneralize:
			d.unrestored = append(d.unrestored, Unrestored{Index: d.index, Path: o.n.location(), Reason: verbOf(o.kind) + " by rule " + ruleName(o.rule)})
			return
		}
	}
	d.ops = append(d.ops, o)
}

func ruleName(i int) string {
	if i < 0 {
		return "default"
	}
	return itoa(i)
}
