package format

import (
	"unicode"
)

// text is free text (address lines, telecom values, identifiers, notes): letters of
// any script become token letters of the same case, ASCII digits become digits, and
// spaces, punctuation and symbols stay where they are, so the token keeps the text's
// shape. Control characters are refused. Matching is exact (case-sensitive); the token
// digest covers the kept characters too, so a token with its separators moved is
// another token.
type text struct {
	noCheck
	min, max int
}

func newText(opts Options) (*text, error) {
	t := &text{min: opts.MinLen, max: opts.MaxLen}
	if t.min == 0 {
		t.min = 1
	}
	if t.max == 0 {
		t.max = 1024
	}
	if t.min > t.max {
		return nil, mismatch("text", "min_length %d exceeds max_length %d", t.min, t.max)
	}
	return t, nil
}

func (t *text) Name() string { return "text" }

// parse builds the template; for a token (ascii) only ASCII letters are tokenizable,
// as only they are ever generated.
func (t *text) parse(value string, ascii bool) (*Parsed, error) {
	tmpl := make(Template, 0, len(value))
	var core []rune
	for _, r := range value {
		switch {
		case unicode.IsControl(r) || r == '\uFFFD':
			return nil, mismatch("text", "control characters and invalid UTF-8 are not allowed")
		case r >= '0' && r <= '9':
			tmpl = append(tmpl, Slot{Set: Digit})
			core = append(core, r)
		case unicode.IsLetter(r) && (!ascii || r < utf8RuneSelf):
			set := Lower
			if unicode.IsUpper(r) || unicode.IsTitle(r) {
				set = Upper
			}
			tmpl = append(tmpl, Slot{Set: set})
			core = append(core, r)
		default:
			tmpl = append(tmpl, Slot{Lit: r})
		}
	}
	if len(core) < t.min || len(core) > t.max {
		return nil, mismatch("text", "needs %d to %d letters or digits", t.min, t.max)
	}
	return &Parsed{Template: tmpl, Core: core, Normalized: value}, nil
}

const utf8RuneSelf = 0x80

func (t *text) Parse(value string) (*Parsed, error)      { return t.parse(value, false) }
func (t *text) ParseToken(token string) (*Parsed, error) { return t.parse(token, true) }
func (t *text) ValidToken(Template, []rune) bool         { return true }
func (t *text) Distinguishable() bool                    { return false }

// fhirID is a FHIR resource id ([A-Za-z0-9\-\.]{1,64}, FHIR R4 id datatype). A
// UUID-shaped id (8-4-4-4-12 lower-case hex) keeps that shape: its token is hex in the
// same places, so that urn:uuid references stay well-formed. Other ids keep their case
// classes, digits and the separators - and . in place.
type fhirID struct {
	noCheck
}

func (fhirID) Name() string { return "fhir_id" }

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
				return false
			}
		}
	}
	return true
}

func (fhirID) Parse(value string) (*Parsed, error) {
	if len(value) < 1 || len(value) > 64 {
		return nil, mismatch("fhir_id", "length must be 1 to 64")
	}
	uuid := isUUID(value)
	tmpl := make(Template, 0, len(value))
	core := make([]rune, 0, len(value))
	for i, r := range value {
		switch {
		case r == '-' || r == '.':
			tmpl = append(tmpl, Slot{Lit: r})
			continue
		case uuid:
			tmpl = append(tmpl, Slot{Set: LowerHex})
		case r >= '0' && r <= '9':
			tmpl = append(tmpl, Slot{Set: Digit})
		case r >= 'A' && r <= 'Z':
			tmpl = append(tmpl, Slot{Set: Upper})
		case r >= 'a' && r <= 'z':
			tmpl = append(tmpl, Slot{Set: Lower})
		default:
			return nil, mismatch("fhir_id", "character %d is not allowed (A-Z, a-z, 0-9, - and .)", i+1)
		}
		core = append(core, r)
	}
	if len(core) == 0 {
		return nil, mismatch("fhir_id", "needs a letter or digit")
	}
	return &Parsed{Template: tmpl, Core: core, Normalized: value}, nil
}

func (f fhirID) ParseToken(token string) (*Parsed, error) { return f.Parse(token) }
func (fhirID) ValidToken(Template, []rune) bool           { return true }
func (fhirID) Distinguishable() bool                      { return false }
