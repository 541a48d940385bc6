package fhir

import (
	"strings"
)

// ref is a parsed literal reference (Reference.reference, Bundle.entry.fullUrl,
// request.url): prefix + id + suffix, with the target type when known.
type ref struct {
	prefix, id, suffix string
	typ                string // target resource type ("" for urn:uuid)
}

// parseRef recognizes the reference forms that carry a resource id: Type/id,
// Type/id/_history/v, absolute URLs ending in those, and urn:uuid:. Contained (#id)
// references, urn:oid, conditional references (with ?) and other URLs are not ids (ok false).
func parseRef(s string) (ref, bool) {
	if strings.HasPrefix(s, "urn:uuid:") {
		id := s[len("urn:uuid:"):]
		return ref{prefix: "urn:uuid:", id: id}, id != ""
	}
	if s == "" || s[0] == '#' || strings.ContainsAny(s, "?# ") || strings.HasPrefix(s, "urn:") {
		return ref{}, false
	}
	segs := strings.Split(s, "/")
	n := len(segs)
	// Type/id or Type/id/_history/vid at the end.
	at := n - 2
	if n >= 4 && segs[n-2] == "_history" {
		at = n - 4
	}
	if at < 0 || !isResourceTypeName(segs[at]) || !isFHIRID(segs[at+1]) {
		return ref{}, false
	}
	prefix := strings.Join(segs[:at+1], "/") + "/"
	suffix := ""
	if at+2 < n {
		suffix = "/" + strings.Join(segs[at+2:], "/")
	}
	if at > 0 && !strings.Contains(segs[0], ":") {
		return ref{}, false // relative path with extra segments: not a FHIR reference form
	}
	return ref{prefix: prefix, id: segs[at+1], suffix: suffix, typ: segs[at]}, true
}

func (r ref) String() string { return r.prefix + r.id + r.suffix }

// isResourceTypeName accepts any FHIR-looking type name (capitalized letters), not only
// the types this package processes: a reference to a Location is still an id to map.
func isResourceTypeName(s string) bool {
	return s != "" && s[0] >= 'A' && s[0] <= 'Z' && isIdent(s)
}

// isFHIRID checks the R4 id lexical form [A-Za-z0-9\-\.]{1,64}.
func isFHIRID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// compartment lists, per resource type, the elements whose Patient reference makes the
// resource part of that patient's compartment (FHIR R4 CompartmentDefinition patient),
// in the order they are tried.
var compartment = map[string][]string{
	"Encounter":         {"subject"},
	"Observation":       {"subject", "performer"},
	"Condition":         {"subject", "asserter"},
	"MedicationRequest": {"subject"},
	"Immunization":      {"patient"},
	"Claim":             {"patient", "payee"},
	"DiagnosticReport":  {"subject"},
}

// patientKey is the subject key of a Patient: "Patient/<id>".
func patientKey(id string) string { return "Patient/" + id }

// subjectOf finds the patient a resource belongs to: the Patient's own id, or the first
// compartment reference that names a Patient (directly, or through a urn:uuid the
// resolver maps to a Patient entry of the Bundle). "" when there is none.
func subjectOf(res map[string]any, typ string, resolve func(string) string) string {
	if typ == "Patient" {
		if id, ok := res["id"].(string); ok && id != "" {
			return patientKey(id)
		}
		return ""
	}
	for _, el := range compartment[typ] {
		for _, r := range referencesAt(res, el) {
			if s := refSubject(r, resolve); s != "" {
				return s
			}
		}
	}
	return ""
}

// referencesAt returns the reference strings of a Reference element (single or repeated)
// and of Claim.payee.party.
func referencesAt(res map[string]any, el string) []string {
	var out []string
	add := func(v any) {
		if m, ok := v.(map[string]any); ok {
			if s, ok := m["reference"].(string); ok {
				out = append(out, s)
			}
			if p, ok := m["party"].(map[string]any); ok {
				if s, ok := p["reference"].(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	switch v := res[el].(type) {
	case []any:
		for _, x := range v {
			add(x)
		}
	default:
		add(v)
	}
	return out
}

func refSubject(s string, resolve func(string) string) string {
	r, ok := parseRef(s)
	if !ok {
		return ""
	}
	if r.prefix == "urn:uuid:" {
		if resolve != nil {
			return resolve(s)
		}
		return ""
	}
	if r.typ == "Patient" {
		return patientKey(r.id)
	}
	return ""
}
