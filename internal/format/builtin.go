package format

import (
	"fmt"
	"strings"
)

// Options adjusts a built-in format.
type Options struct {
	// Distinguishable makes tokens differ from every real identifier where the format
	// allows it (SSN tokens in the 9xx area, which the SSA never issues).
	Distinguishable bool
	// MinLen and MaxLen bound variable-length formats (digits, alnum).
	MinLen, MaxLen int
}

// New returns the built-in format called name, or a pattern format when name is not a
// built-in (`9` digit, `A` upper, `a` lower, `X` alphanumeric, `\` escapes, anything
// else literal).
func New(name string, opts Options) (Format, error) {
	switch name {
	case "ssn":
		return newSSN(opts.Distinguishable), nil
	case "digits":
		return newRun("digits", Digit, opts)
	case "alnum":
		return newRun("alnum", Alnum, opts)
	}
	return NewPattern(name)
}

// Builtins lists the names New recognises as built-in formats.
func Builtins() []string { return []string{"ssn", "digits", "alnum"} }

// Pattern is a fixed-shape format such as MRN-99999999.
type Pattern struct {
	name string
	tmpl Template
}

// NewPattern compiles a pattern. It must have at least one tokenizable position.
func NewPattern(p string) (*Pattern, error) {
	var t Template
	escaped := false
	for _, r := range p {
		if escaped {
			t = append(t, Slot{Lit: r})
			escaped = false
			continue
		}
		switch r {
		case '\\':
			escaped = true
		case '9':
			t = append(t, Slot{Set: Digit})
		case 'A':
			t = append(t, Slot{Set: Upper})
		case 'a':
			t = append(t, Slot{Set: Lower})
		case 'X':
			t = append(t, Slot{Set: Alnum})
		default:
			t = append(t, Slot{Lit: r})
		}
	}
	if escaped {
		return nil, fmt.Errorf("pattern %q ends with a lone backslash", p)
	}
	if len(t.Sets()) == 0 {
		return nil, fmt.Errorf("%q is neither a built-in format (%s) nor a pattern with a tokenizable position (9, A, a or X)", p, strings.Join(Builtins(), ", "))
	}
	return &Pattern{name: p, tmpl: t}, nil
}

// Name returns the pattern.
func (p *Pattern) Name() string { return p.name }

// Template returns the pattern's only shape.
func (p *Pattern) Template() Template { return p.tmpl }

// Parse checks that value has the pattern's shape.
func (p *Pattern) Parse(value string) (*Parsed, error) {
	if !p.tmpl.match(value) {
		return nil, &Error{Format: p.name, Reason: fmt.Sprintf("expected %d characters in the pattern's shape", len(p.tmpl))}
	}
	core := p.tmpl.Core(value)
	return &Parsed{Template: p.tmpl, Core: core, Normalized: string(core)}, nil
}

// ParseToken is Parse: pattern tokens share the values' shape.
func (p *Pattern) ParseToken(token string) (*Parsed, error) { return p.Parse(token) }

// ValidToken accepts every token of the right shape.
func (p *Pattern) ValidToken(Template, []byte) bool { return true }

// Distinguishable is false: a pattern gives no room to set tokens apart.
func (p *Pattern) Distinguishable() bool { return false }

// run is a variable-length string of one charset.
type run struct {
	name     string
	set      Charset
	min, max int
}

func newRun(name string, set Charset, opts Options) (*run, error) {
	r := &run{name: name, set: set, min: opts.MinLen, max: opts.MaxLen}
	if r.min == 0 {
		r.min = 1
	}
	if r.max == 0 {
		r.max = 256
	}
	if r.min > r.max {
		return nil, fmt.Errorf("format %s: min length %d exceeds max length %d", name, r.min, r.max)
	}
	return r, nil
}

func (r *run) Name() string { return r.name }

func (r *run) Parse(value string) (*Parsed, error) {
	if len(value) < r.min || len(value) > r.max {
		return nil, &Error{Format: r.name, Reason: fmt.Sprintf("length must be %d to %d", r.min, r.max)}
	}
	t := make(Template, len(value))
	for i := 0; i < len(value); i++ {
		if !r.set.Contains(value[i]) {
			return nil, &Error{Format: r.name, Reason: fmt.Sprintf("character at position %d is not allowed", i+1)}
		}
		t[i] = Slot{Set: r.set}
	}
	return &Parsed{Template: t, Core: []byte(value), Normalized: value}, nil
}

func (r *run) ParseToken(token string) (*Parsed, error) { return r.Parse(token) }
func (r *run) ValidToken(Template, []byte) bool         { return true }
func (r *run) Distinguishable() bool                    { return false }

// ssn is a US Social Security number, with or without dashes or spaces. Values follow
// the SSA's rules (area not 000, 666 or 900-999; group not 00; serial not 0000). With
// distinguishable tokens, tokens lie in the 900-999 area, which is never issued.
type ssn struct {
	distinguishable bool
	layouts         []Template
}

func newSSN(distinguishable bool) *ssn {
	s := &ssn{distinguishable: distinguishable}
	for _, p := range []string{"999-99-9999", "999999999", "999 99 9999"} {
		pat, _ := NewPattern(p)
		s.layouts = append(s.layouts, pat.tmpl)
	}
	return s
}

func (s *ssn) Name() string { return "ssn" }

func (s *ssn) shape(v string) (*Parsed, error) {
	for _, t := range s.layouts {
		if t.match(v) {
			core := t.Core(v)
			return &Parsed{Template: t, Core: core, Normalized: string(core)}, nil
		}
	}
	return nil, &Error{Format: "ssn", Reason: "expected 9 digits, as NNN-NN-NNNN or NNNNNNNNN"}
}

func (s *ssn) Parse(value string) (*Parsed, error) {
	p, err := s.shape(value)
	if err != nil {
		return nil, err
	}
	c := p.Core
	area := string(c[:3])
	if area == "000" || area == "666" || c[0] == '9' || string(c[3:5]) == "00" || string(c[5:]) == "0000" {
		return nil, &Error{Format: "ssn", Reason: "not a valid SSN (area, group or serial number never issued)"}
	}
	return p, nil
}

func (s *ssn) ParseToken(token string) (*Parsed, error) {
	p, err := s.shape(token)
	if err != nil {
		return nil, err
	}
	if !s.ValidToken(p.Template, p.Core) {
		return nil, &Error{Format: "ssn", Reason: "not a token of this class"}
	}
	return p, nil
}

func (s *ssn) ValidToken(_ Template, c []byte) bool {
	if s.distinguishable {
		return c[0] == '9'
	}
	area := string(c[:3])
	return area != "000" && area != "666" && c[0] != '9' && string(c[3:5]) != "00" && string(c[5:]) != "0000"
}

func (s *ssn) Distinguishable() bool { return s.distinguishable }
