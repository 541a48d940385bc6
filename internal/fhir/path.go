package fhir

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unsafe"
)

// node is one element of a resource under evaluation: where it sits (parent object, JSON
// key, array index) so that actions can replace or remove it, its FHIRPath name and type.
type node struct {
	parent *node
	key    string // JSON key in the parent object (valueQuantity)
	name   string // FHIRPath name (value)
	index  int    // position in a JSON array, or -1
	typ    string // FHIR type, "" when the model does not know the element
	val    any
	kids   []*node // children, computed once
	desc   []*node // descendants, computed once
	listed bool
}

// slot identifies a leaf by its container, for first-rule-wins claims.
type slot struct {
	obj   unsafe.Pointer
	key   string
	index int
}

func (n *node) slot() slot {
	if n.parent == nil {
		return slot{index: -2}
	}
	return slot{obj: reflect.ValueOf(n.parent.val).UnsafePointer(), key: n.key, index: n.index}
}

// set replaces the node's value in its parent, and drops the primitive's id and
// extensions (the "_key" sibling of FHIR JSON): they describe the original value and can
// carry it (a patient-birthTime extension beside a birthDate holds the exact date).
func (n *node) set(v any) {
	obj := n.parent.val.(map[string]any)
	if n.index >= 0 {
		obj[n.key].([]any)[n.index] = v
		dropPrimitiveExt(obj, "_"+n.key, n.index)
	} else {
		obj[n.key] = v
		delete(obj, "_"+n.key)
	}
	n.val = v
}

// dropPrimitiveExt clears entry i of a repeated primitive's "_key" array (null keeps the
// others aligned) and removes the array when nothing is left in it.
func dropPrimitiveExt(obj map[string]any, key string, i int) {
	ext, ok := obj[key].([]any)
	if !ok {
		delete(obj, key) // not the FHIR JSON shape: drop it rather than keep it unexamined
		return
	}
	if i < len(ext) {
		ext[i] = nil
	}
	for _, e := range ext {
		if e != nil {
			return
		}
	}
	delete(obj, key)
}

// location is the node's FHIRPath location as fhirpath.js prints it (Observation.value,
// Patient.name[0].given[1]); it names paths in errors and reports, never values.
func (n *node) location() string {
	if n.parent == nil {
		return n.typ
	}
	s := n.parent.location() + "." + n.name
	if n.index >= 0 {
		s += "[" + strconv.Itoa(n.index) + "]"
	}
	return s
}

// rootNode wraps a resource for evaluation.
func rootNode(res map[string]any) *node {
	t, _ := res["resourceType"].(string)
	return &node{index: -1, typ: t, name: t, val: res}
}

// children lists the element nodes directly under n (array items one by one). The list
// is computed once: actions replace leaves in place and never add elements.
func (n *node) children() []*node {
	if !n.listed {
		n.kids, n.listed = n.listChildren(), true
	}
	return n.kids
}

// descendants lists every node below n, computed once.
func (n *node) descendants() []*node {
	if n.desc == nil {
		n.desc = []*node{}
		for _, c := range n.children() {
			c.walk(func(d *node) bool { n.desc = append(n.desc, d); return true })
		}
	}
	return n.desc
}

func (n *node) listChildren() []*node {
	obj, ok := n.val.(map[string]any)
	if !ok {
		return nil
	}
	out := make([]*node, 0, len(obj))
	for k, v := range obj {
		if k == "resourceType" || k == "" || k[0] == '_' || k == "fhir_comments" {
			continue
		}
		_, name, typ := lookupElem(n.typ, k)
		if arr, ok := v.([]any); ok {
			for i, item := range arr {
				if item != nil {
					out = append(out, &node{parent: n, key: k, name: name, index: i, typ: childType(typ, item), val: item})
				}
			}
			continue
		}
		if v != nil {
			out = append(out, &node{parent: n, key: k, name: name, index: -1, typ: childType(typ, v), val: v})
		}
	}
	return out
}

// childType resolves Resource-typed elements (contained, entry.resource) to the type the
// JSON object names.
func childType(typ string, v any) string {
	if typ == "Resource" {
		if obj, ok := v.(map[string]any); ok {
			t, _ := obj["resourceType"].(string)
			return t
		}
	}
	return typ
}

// walk calls f for n and every node below it, depth first; f returns false to skip the
// subtree.
func (n *node) walk(f func(*node) bool) {
	if !f(n) {
		return
	}
	for _, c := range n.children() {
		c.walk(f)
	}
}

// stepKind is one step of the supported FHIRPath subset.
type stepKind int

const (
	stepChild stepKind = iota
	stepWhere
	stepOfType
	stepDescendants
)

type step struct {
	kind  stepKind
	name  string // child name, where() field, ofType() type
	value string // where() literal
}

// Path is a compiled expression of the FHIRPath subset (docs/fhir.md): an optional root
// type, child navigation, where(field = 'literal'), ofType(Type), descendants() and
// nodesByType('Type') (= descendants().ofType(Type)).
type Path struct {
	src   string
	root  string // resource type, "Resource", or "" (starts at the resource)
	steps []step
}

// String returns the expression as written.
func (p *Path) String() string { return p.src }

// ParsePath compiles an expression of the supported subset and checks element names
// against the model where the types are known.
func ParsePath(src string) (*Path, error) {
	p := &Path{src: src}
	parts, err := splitSteps(src)
	if err != nil {
		return nil, err
	}
	for i, part := range parts {
		st, err := parseStep(part)
		if err != nil {
			return nil, err
		}
		if i == 0 && st[0].kind == stepChild {
			if st[0].name != "Resource" && !isResourceType(st[0].name) {
				return nil, fmt.Errorf("path %q: root %q is not a supported resource type", src, st[0].name)
			}
			p.root = st[0].name
			continue
		}
		p.steps = append(p.steps, st...)
	}
	return p, p.check()
}

// splitSteps splits at dots outside parentheses and quotes.
func splitSteps(src string) ([]string, error) {
	var parts []string
	depth, quoted, start := 0, false, 0
	for i, r := range src {
		switch {
		case r == '\'':
			quoted = !quoted
		case quoted:
		case r == '(':
			depth++
		case r == ')':
			depth--
		case r == '.' && depth == 0:
			parts = append(parts, strings.TrimSpace(src[start:i]))
			start = i + 1
		}
	}
	parts = append(parts, strings.TrimSpace(src[start:]))
	if depth != 0 || quoted {
		return nil, fmt.Errorf("path %q: unbalanced parentheses or quotes", src)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("path %q: empty step", src)
		}
	}
	return parts, nil
}

func parseStep(s string) ([]step, error) {
	fn, arg, isCall := strings.Cut(s, "(")
	if !isCall {
		if !isIdent(s) {
			return nil, fmt.Errorf("step %q is not an element name", s)
		}
		return []step{{kind: stepChild, name: s}}, nil
	}
	if !strings.HasSuffix(arg, ")") {
		return nil, fmt.Errorf("step %q: text after the closing parenthesis", s)
	}
	arg = strings.TrimSpace(strings.TrimSuffix(arg, ")"))
	switch strings.TrimSpace(fn) {
	case "descendants":
		if arg != "" {
			return nil, fmt.Errorf("descendants() takes no argument")
		}
		return []step{{kind: stepDescendants}}, nil
	case "ofType":
		if !isKnownType(arg) {
			return nil, fmt.Errorf("ofType(%s): unknown type", arg)
		}
		return []step{{kind: stepOfType, name: arg}}, nil
	case "nodesByType":
		t := strings.Trim(arg, "'")
		if len(arg) < 2 || arg[0] != '\'' || arg[len(arg)-1] != '\'' || !isKnownType(t) {
			return nil, fmt.Errorf("nodesByType(%s): want a quoted known type", arg)
		}
		return []step{{kind: stepDescendants}, {kind: stepOfType, name: t}}, nil
	case "where":
		field, lit, ok := strings.Cut(arg, "=")
		field, lit = strings.TrimSpace(field), strings.TrimSpace(lit)
		if !ok || !isIdent(field) || len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' || strings.Contains(lit[1:len(lit)-1], "'") {
			return nil, fmt.Errorf("where(%s): only where(element = 'literal') is supported", arg)
		}
		return []step{{kind: stepWhere, name: field, value: lit[1 : len(lit)-1]}}, nil
	}
	return nil, fmt.Errorf("function %s() is not in the supported subset", strings.TrimSpace(fn))
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func isKnownType(t string) bool {
	if model[t] != nil || primitiveBase[t] != "" || t == "Resource" {
		return true
	}
	switch t {
	case "string", "uri", "integer", "decimal", "boolean", "date", "dateTime", "instant", "time", "base64Binary", "xhtml":
		return true
	}
	return false
}

// check walks the steps over the static types and refuses child names that no possible
// type declares.
func (p *Path) check() error {
	types := []string{p.root}
	if p.root == "" || p.root == "Resource" {
		types = nil // any resource: unknown statically
	}
	for _, st := range p.steps {
		switch st.kind {
		case stepDescendants:
			types = nil
		case stepOfType:
			types = []string{st.name}
		case stepChild:
			if types == nil || !allComplex(types) {
				types = nil
				continue
			}
			var next []string
			for _, t := range types {
				if e := elemByName(t, st.name); e != nil {
					next = append(next, e.types...)
				}
			}
			if len(next) == 0 {
				return fmt.Errorf("path %q: %s has no element %q", p.src, strings.Join(types, "|"), st.name)
			}
			types = next
		}
	}
	return nil
}

func allComplex(types []string) bool {
	for _, t := range types {
		if model[t] == nil {
			return false
		}
	}
	return true
}

// eval selects the nodes of the resource rooted at r.
func (p *Path) eval(r *node) []*node {
	if p.root != "" && p.root != "Resource" && p.root != r.typ {
		return nil
	}
	cur := []*node{r}
	for _, st := range p.steps {
		var next []*node
		for _, n := range cur {
			next = st.apply(n, next)
		}
		cur = next
	}
	return cur
}

func (st step) apply(n *node, out []*node) []*node {
	switch st.kind {
	case stepChild:
		for _, c := range n.children() {
			if c.name == st.name {
				out = append(out, c)
			}
		}
	case stepWhere:
		for _, c := range n.children() {
			if s, ok := c.val.(string); ok && c.name == st.name && s == st.value {
				return append(out, n)
			}
		}
	case stepOfType:
		if isA(n.typ, st.name) {
			out = append(out, n)
		}
	case stepDescendants:
		out = append(out, n.descendants()...)
	}
	return out
}
