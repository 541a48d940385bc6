package grant

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/phivault/tokenizer/internal/errs"
)

// FHIR systems a Consent must use where this service reads codes.
const (
	// ClassLabelSystem is the securityLabel system whose codes are token class names.
	ClassLabelSystem = "urn:tokenizer:class"
	// PurposeSystem is HL7 v3 ActReason, the system of PurposeOfUse codes.
	PurposeSystem = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
)

// denyForever is the end of a denial without a period end.
var denyForever = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// Consent is what one FHIR R4 Consent says, as grants and denials of one subject.
type Consent struct {
	ID      string
	Subject string  // Consent.patient.identifier.value
	Grants  []Grant // Principal, Classes, Purposes, window, Deny and Justification set
}

// consentKeys are the Consent elements read or accepted. Informational ones (meta,
// text, scope, category, dateTime, performer, organization) do not change who may see
// what; every other element is refused, naming its path.
var consentKeys = []string{"resourceType", "id", "meta", "text", "status", "scope", "category", "patient",
	"dateTime", "performer", "organization", "provision"}

var provisionKeys = []string{"type", "period", "actor", "purpose", "securityLabel", "provision"}

// pathError is an INVALID_ARGUMENT naming the element's path.
func pathError(path, format string, args ...any) error {
	return errs.New(errs.InvalidArgument, "%s: %s", path, fmt.Sprintf(format, args...))
}

// ConsentOptions say how ParseConsent reads codes.
type ConsentOptions struct {
	Now time.Time
	// ValidPurpose checks purpose codes.
	ValidPurpose func(code string) bool
	// Labels maps a securityLabel "system|code" to classes; a label of the system
	// urn:tokenizer:class is the class of its code and needs no entry.
	Labels map[string][]string
}

// ParseConsent reads a FHIR R4 Consent resource (JSON). A permit provision becomes a
// grant for each actor (no actor: every caller, "*"), with the classes its
// securityLabels stand for (none: every class) and its purposes; a deny provision
// becomes a denial, which overrides permits. Nested provisions are read one level
// deep, inheriting the root's period.
func ParseConsent(raw []byte, o ConsentOptions) (Consent, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return Consent{}, errs.New(errs.InvalidArgument, "consent: not a JSON object")
	}
	if rt, _ := m["resourceType"].(string); rt != "Consent" {
		return Consent{}, pathError("resourceType", "want Consent")
	}
	if err := onlyKeys(m, "Consent", consentKeys); err != nil {
		return Consent{}, err
	}
	if st, _ := m["status"].(string); st != "active" {
		return Consent{}, pathError("Consent.status", "only active consents are imported")
	}
	c := Consent{}
	c.ID, _ = m["id"].(string)
	var err error
	if c.Subject, err = consentPatient(m["patient"]); err != nil {
		return Consent{}, err
	}
	root, ok := m["provision"].(map[string]any)
	if !ok {
		return Consent{}, pathError("Consent.provision", "required (an object)")
	}
	p := consentParser{ConsentOptions: o, source: "Consent/" + c.ID}
	if c.Grants, err = p.provision(root, "Consent.provision", nil); err != nil {
		return Consent{}, err
	}
	return c, nil
}

func consentPatient(v any) (string, error) {
	pat, ok := v.(map[string]any)
	if !ok {
		return "", pathError("Consent.patient", "required (a Reference with an identifier)")
	}
	if err := onlyKeys(pat, "Consent.patient", []string{"reference", "identifier", "display"}); err != nil {
		return "", err
	}
	id, _ := pat["identifier"].(map[string]any)
	if err := onlyKeys(id, "Consent.patient.identifier", []string{"system", "value", "use"}); err != nil {
		return "", err
	}
	value, _ := id["value"].(string)
	if value == "" {
		return "", pathError("Consent.patient.identifier.value", "required: the patient's identifier as given in TokenizeItem.subject")
	}
	return value, nil
}

// onlyKeys refuses any key of m not in allowed, naming its path.
func onlyKeys(m map[string]any, path string, allowed []string) error {
	var extra []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	slices.Sort(extra)
	return pathError(path+"."+extra[0], "not supported by this service (refused rather than ignored)")
}

type consentParser struct {
	ConsentOptions
	source string
}

// period is a provision's window: start and end, either possibly unset.
type period struct{ start, end time.Time }

// provision turns one provision (and, at the root, its nested ones) into grants.
func (p consentParser) provision(m map[string]any, path string, parent *period) ([]Grant, error) {
	allowed := provisionKeys
	if parent != nil {
		allowed = provisionKeys[:5] // one level of nesting
	}
	if err := onlyKeys(m, path, allowed); err != nil {
		return nil, err
	}
	typ, _ := m["type"].(string)
	if typ != "permit" && typ != "deny" {
		return nil, pathError(path+".type", "want permit or deny")
	}
	per, err := readPeriod(m["period"], path+".period", parent)
	if err != nil {
		return nil, err
	}
	actors, err := readActors(m["actor"], path+".actor")
	if err != nil {
		return nil, err
	}
	classes, err := p.readLabels(m["securityLabel"], path+".securityLabel")
	if err != nil {
		return nil, err
	}
	purposes, err := readCodes(m["purpose"], path+".purpose", PurposeSystem, p.ValidPurpose)
	if err != nil {
		return nil, err
	}
	out, err := p.grants(typ == "deny", path, per, actors, classes, purposes)
	if err != nil {
		return nil, err
	}
	nested, _ := m["provision"].([]any)
	for i, n := range nested {
		np := fmt.Sprintf("%s.provision[%d]", path, i)
		nm, ok := n.(map[string]any)
		if !ok {
			return nil, pathError(np, "want an object")
		}
		if typ == "deny" && nm["type"] == "permit" {
			return nil, pathError(np+".type", "a permit nested in a deny is not supported (denials override permits)")
		}
		gs, err := p.provision(nm, np, &per)
		if err != nil {
			return nil, err
		}
		out = append(out, gs...)
	}
	return out, nil
}

// grants builds one grant per actor of a provision.
func (p consentParser) grants(deny bool, path string, per period, actors, classes, purposes []string) ([]Grant, error) {
	if len(actors) == 0 {
		actors = []string{"*"}
	}
	if len(classes) == 0 {
		classes = []string{"*"}
	}
	if per.start.IsZero() {
		per.start = p.Now
	}
	switch {
	case !deny && len(purposes) == 0:
		return nil, pathError(path+".purpose", "required for a permit")
	case !deny && per.end.IsZero():
		return nil, pathError(path+".period.end", "required for a permit (grants end by themselves)")
	case deny && len(purposes) == 0:
		purposes = []string{"*"}
	}
	if deny && per.end.IsZero() {
		per.end = denyForever
	}
	var out []Grant
	for _, a := range actors {
		out = append(out, Grant{Principal: a, Classes: classes, Purposes: purposes, NotBefore: per.start, NotAfter: per.end,
			Deny: deny, Justification: p.source + " " + strings.TrimPrefix(path, "Consent.")})
	}
	return out, nil
}

func readPeriod(v any, path string, parent *period) (period, error) {
	var per period
	if parent != nil {
		per = *parent
	}
	if v == nil {
		return per, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return per, pathError(path, "want a Period")
	}
	if err := onlyKeys(m, path, []string{"start", "end"}); err != nil {
		return per, err
	}
	for key, dst := range map[string]*time.Time{"start": &per.start, "end": &per.end} {
		s, ok := m[key].(string)
		if !ok {
			continue
		}
		t, err := parseFHIRDateTime(s)
		if err != nil {
			return per, pathError(path+"."+key, "not a FHIR dateTime")
		}
		*dst = t
	}
	return per, nil
}

// parseFHIRDateTime reads the FHIR dateTime forms with a day at least: a date (taken
// as midnight UTC) or a full date-time with a time zone.
func parseFHIRDateTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Parse("2006-01-02", s)
}

func readActors(v any, path string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, pathError(path, "want a list")
	}
	var out []string
	for i, a := range list {
		ap := fmt.Sprintf("%s[%d]", path, i)
		m, _ := a.(map[string]any)
		if err := onlyKeys(m, ap, []string{"role", "reference"}); err != nil {
			return nil, err
		}
		ref, _ := m["reference"].(map[string]any)
		if err := onlyKeys(ref, ap+".reference", []string{"identifier", "display"}); err != nil {
			return nil, err
		}
		id, _ := ref["identifier"].(map[string]any)
		if err := onlyKeys(id, ap+".reference.identifier", []string{"system", "value"}); err != nil {
			return nil, err
		}
		value, _ := id["value"].(string)
		if value == "" {
			return nil, pathError(ap+".reference.identifier.value", "required: the caller identity (SPIFFE ID, certificate CN, or a pattern with *)")
		}
		out = append(out, value)
	}
	return out, nil
}

// readCodes reads a list of Codings of one system; valid (optional) checks codes.
func readCodes(v any, path, system string, valid func(string) bool) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, pathError(path, "want a list of Codings")
	}
	var out []string
	for i, c := range list {
		cp := fmt.Sprintf("%s[%d]", path, i)
		m, _ := c.(map[string]any)
		if err := onlyKeys(m, cp, []string{"system", "code", "display"}); err != nil {
			return nil, err
		}
		if s, _ := m["system"].(string); s != system {
			return nil, pathError(cp+".system", "want %s", system)
		}
		code, _ := m["code"].(string)
		if code == "" || (valid != nil && !valid(code)) {
			return nil, pathError(cp+".code", "not a supported code")
		}
		out = append(out, code)
	}
	return out, nil
}

// readLabels reads securityLabel Codings as classes: urn:tokenizer:class codes are
// class names; other labels go through Labels ("system|code").
func (p consentParser) readLabels(v any, path string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, pathError(path, "want a list of Codings")
	}
	var out []string
	for i, c := range list {
		cp := fmt.Sprintf("%s[%d]", path, i)
		m, _ := c.(map[string]any)
		if err := onlyKeys(m, cp, []string{"system", "code", "display"}); err != nil {
			return nil, err
		}
		system, _ := m["system"].(string)
		code, _ := m["code"].(string)
		switch classes, mapped := p.Labels[system+"|"+code]; {
		case code == "":
			return nil, pathError(cp+".code", "required")
		case system == ClassLabelSystem:
			out = append(out, code)
		case mapped:
			out = append(out, classes...)
		default:
			return nil, pathError(cp, "no class mapping for this label (system %s or grants.security_labels)", ClassLabelSystem)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
