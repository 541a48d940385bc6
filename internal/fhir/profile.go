package fhir

import (
	"embed"
	"fmt"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/phivault/tokenizer/internal/errs"
)

// Action is what a rule does to the elements it selects.
type Action string

// Actions of a profile rule (docs/fhir.md describes each).
const (
	ActTokenize   Action = "tokenize"
	ActDateShift  Action = "dateshift"
	ActRedact     Action = "redact"
	ActKeep       Action = "keep"
	ActMask       Action = "mask"
	ActGeneralize Action = "generalize"
)

// RuleSpec is one rule as written in YAML.
type RuleSpec struct {
	Path   string `yaml:"path"`
	Action Action `yaml:"action"`
	Class  string `yaml:"class,omitempty"`
	// Subject "patient" binds a tokenize rule's values to the resource's patient:
	// erasing the patient makes them unrevealable. Each patient then has its own token
	// for a value, so bind only values with room for one token per patient (identifiers,
	// telecom), not short values many patients share ("Mr.", a state, an initial).
	Subject string `yaml:"subject,omitempty"`
}

// IDSpec says which resource types have their ids (and every reference to them)
// tokenized, and under which class.
type IDSpec struct {
	Class string   `yaml:"class"`
	Types []string `yaml:"types"` // resource types, or "*" for all
}

// ProfileSpec is a profile as written in the service configuration.
type ProfileSpec struct {
	Name           string     `yaml:"name"`
	Description    string     `yaml:"description,omitempty"`
	IDs            *IDSpec    `yaml:"ids,omitempty"`
	Default        *RuleSpec  `yaml:"default,omitempty"`
	ZIP3Table      string     `yaml:"zip3_table,omitempty"`
	RestrictedZIP3 []string   `yaml:"restricted_zip3,omitempty"`
	Rules          []RuleSpec `yaml:"rules"`
}

// rule is a compiled rule.
type rule struct {
	index  int // position in the profile's rules; -1 for the default
	path   *Path
	action Action
	class  string
	bind   bool // the values belong to the patient (RuleSpec.Subject)
}

// Profile is a compiled, immutable profile.
type Profile struct {
	Name        string
	Description string
	rules       []rule
	def         *rule
	idClass     string
	idTypes     map[string]bool // "*" means every type
	zip3        map[string]bool // restricted ZIP3 areas, become 000
	zip3Table   string
}

// Reversible reports whether re-identification gives back every value the profile
// keeps in some form: no rule (nor the default) masks or generalizes. Elements it
// redacts are gone either way, and re-identification reports them.
func (p *Profile) Reversible() bool {
	for _, r := range append(slices.Clone(p.rules), p.defaultRule()...) {
		if r.action == ActMask || r.action == ActGeneralize {
			return false
		}
	}
	return true
}

// Classes lists the token classes the profile uses, sorted.
func (p *Profile) Classes() []string {
	set := map[string]bool{}
	if p.idClass != "" {
		set[p.idClass] = true
	}
	for _, r := range append(slices.Clone(p.rules), p.defaultRule()...) {
		if r.class != "" {
			set[r.class] = true
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

func (p *Profile) defaultRule() []rule {
	if p.def == nil {
		return nil
	}
	return []rule{*p.def}
}

// idTokenized reports whether ids of resource type t are tokenized.
func (p *Profile) idTokenized(t string) bool {
	return p.idClass != "" && (p.idTypes["*"] || p.idTypes[t])
}

// ClassCheck tells whether a token class exists (and may be used by profiles); nil
// accepts every class name.
type ClassCheck func(class string) error

// Compile checks a profile spec and compiles it. Errors name the profile, the rule index
// and the problem, never a value.
func Compile(s ProfileSpec, classes ClassCheck) (*Profile, error) {
	p, err := compile(s, classes)
	if err != nil {
		return nil, errs.New(errs.InvalidArgument, "profile %q: %s", s.Name, err.Error())
	}
	return p, nil
}

func compile(s ProfileSpec, classes ClassCheck) (*Profile, error) {
	if !isIdent(strings.ReplaceAll(s.Name, "-", "_")) {
		return nil, fmt.Errorf("name must be letters, digits, _ or -")
	}
	p := &Profile{Name: s.Name, Description: s.Description, idTypes: map[string]bool{}}
	if s.IDs != nil {
		if err := checkClass(s.IDs.Class, classes); err != nil {
			return nil, fmt.Errorf("ids: %w", err)
		}
		p.idClass = s.IDs.Class
		for _, t := range s.IDs.Types {
			if t != "*" && !isResourceType(t) {
				return nil, fmt.Errorf("ids: %q is not a supported resource type", t)
			}
			p.idTypes[t] = true
		}
		if len(p.idTypes) == 0 {
			return nil, fmt.Errorf("ids: types is empty (use [\"*\"] for every type)")
		}
	}
	if err := p.setZIP3(s); err != nil {
		return nil, err
	}
	for i, rs := range s.Rules {
		r, err := compileRule(rs, i, classes)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i, err)
		}
		p.rules = append(p.rules, r)
	}
	if s.Default != nil {
		if s.Default.Path != "" {
			return nil, fmt.Errorf("default: takes no path")
		}
		r, err := compileRule(*s.Default, -1, classes)
		if err != nil {
			return nil, fmt.Errorf("default: %w", err)
		}
		p.def = &r
	}
	return p, nil
}

func compileRule(rs RuleSpec, i int, classes ClassCheck) (rule, error) {
	r := rule{index: i, action: rs.Action, class: rs.Class, bind: rs.Subject == SubjectPatient}
	if rs.Subject != "" && (rs.Subject != SubjectPatient || rs.Action != ActTokenize) {
		return r, fmt.Errorf("subject %q: only %q, and only with action tokenize", rs.Subject, SubjectPatient)
	}
	if i >= 0 {
		if rs.Path == "" {
			return r, fmt.Errorf("path is required")
		}
		path, err := ParsePath(rs.Path)
		if err != nil {
			return r, err
		}
		r.path = path
	}
	switch rs.Action {
	case ActTokenize, ActMask:
		if rs.Class == "" {
			return r, fmt.Errorf("action %s needs a class", rs.Action)
		}
		if err := checkClass(rs.Class, classes); err != nil {
			return r, err
		}
	case ActDateShift, ActRedact, ActKeep, ActGeneralize:
		if rs.Class != "" {
			return r, fmt.Errorf("action %s takes no class", rs.Action)
		}
	case "":
		return r, fmt.Errorf("action is required")
	default:
		return r, fmt.Errorf("unknown action %q (want tokenize, dateshift, redact, keep, mask or generalize)", rs.Action)
	}
	return r, nil
}

// SubjectPatient is the one value of RuleSpec.Subject.
const SubjectPatient = "patient"

func checkClass(c string, classes ClassCheck) error {
	if c == "" {
		return fmt.Errorf("class is required")
	}
	if classes != nil {
		if err := classes(c); err != nil {
			return fmt.Errorf("class %q: %w", c, err)
		}
	}
	return nil
}

func (p *Profile) setZIP3(s ProfileSpec) error {
	p.zip3 = map[string]bool{}
	if len(s.RestrictedZIP3) > 0 {
		if s.ZIP3Table != "" {
			return fmt.Errorf("zip3_table and restricted_zip3 are exclusive")
		}
		p.zip3Table = "custom"
		for _, z := range s.RestrictedZIP3 {
			if len(z) != 3 || strings.Trim(z, "0123456789") != "" {
				return fmt.Errorf("restricted_zip3: %q is not three digits", z)
			}
			p.zip3[z] = true
		}
		return nil
	}
	name := s.ZIP3Table
	if name == "" {
		name = ZIP3Census2000
	}
	table, ok := restrictedZIP3Tables[name]
	if !ok {
		return fmt.Errorf("unknown zip3_table %q (want %s or %s)", name, ZIP3Census2000, ZIP3AnonymizerSample)
	}
	p.zip3Table = name
	for _, z := range table {
		p.zip3[z] = true
	}
	return nil
}

// ParseProfile reads and compiles one profile written in YAML.
func ParseProfile(data []byte, classes ClassCheck) (*Profile, error) {
	var s ProfileSpec
	if err := yaml.Unmarshal(data, &s); err != nil {
		return nil, errs.New(errs.InvalidArgument, "profile: not YAML: %s", yamlErr(err))
	}
	return Compile(s, classes)
}

// ParseProfiles reads a YAML list of profiles (`profiles: [...]` or a bare list).
func ParseProfiles(data []byte, classes ClassCheck) ([]*Profile, error) {
	var doc struct {
		Profiles []ProfileSpec `yaml:"profiles"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Profiles == nil {
		var list []ProfileSpec
		if err2 := yaml.Unmarshal(data, &list); err2 != nil {
			return nil, errs.New(errs.InvalidArgument, "profiles: not a YAML list of profiles: %s", yamlErr(err, err2))
		}
		doc.Profiles = list
	}
	var out []*Profile
	for i, s := range doc.Profiles {
		p, err := Compile(s, classes)
		if err != nil {
			return nil, errs.New(errs.InvalidArgument, "profiles[%d]: %s", i, err.Error())
		}
		out = append(out, p)
	}
	return out, nil
}

// yamlErr keeps yaml's line numbers but not the document text it may quote.
func yamlErr(errs ...error) string {
	for _, err := range errs {
		if err != nil {
			msg := err.Error()
			if i := strings.Index(msg, "`"); i >= 0 {
				msg = msg[:i] + "(value omitted)"
			}
			return msg
		}
	}
	return "empty document"
}

//go:embed presets/*.yaml
var presetFS embed.FS

// Preset names.
const (
	PresetSafeHarbor     = "safe_harbor"
	PresetLimitedDataSet = "limited_data_set"
)

// Preset compiles a built-in profile by name.
func Preset(name string, classes ClassCheck) (*Profile, error) {
	data, err := presetFS.ReadFile("presets/" + name + ".yaml")
	if err != nil {
		return nil, errs.New(errs.InvalidArgument, "unknown profile %q", name)
	}
	var s ProfileSpec
	if err := yaml.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("preset %s: %w", name, err)
	}
	return Compile(s, classes)
}

// Registry holds the profiles a service offers: the presets and the configured ones.
type Registry struct {
	byName map[string]*Profile
}

// NewRegistry compiles the presets and adds the custom profiles; a custom profile may not
// reuse a preset's name.
func NewRegistry(custom []*Profile, classes ClassCheck) (*Registry, error) {
	r := &Registry{byName: map[string]*Profile{}}
	for _, n := range []string{PresetSafeHarbor, PresetLimitedDataSet} {
		p, err := Preset(n, classes)
		if err != nil {
			return nil, err
		}
		r.byName[n] = p
	}
	for _, p := range custom {
		if _, dup := r.byName[p.Name]; dup {
			return nil, errs.New(errs.InvalidArgument, "profile %q: name already used", p.Name)
		}
		r.byName[p.Name] = p
	}
	return r, nil
}

// Lookup returns the named profile or an InvalidArgument error.
func (r *Registry) Lookup(name string) (*Profile, error) {
	if p, ok := r.byName[name]; ok {
		return p, nil
	}
	return nil, errs.New(errs.InvalidArgument, "unknown profile %q", name)
}

// Names lists the profiles, sorted (for ListProfiles).
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
