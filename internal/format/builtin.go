package format

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Options adjusts a built-in format.
type Options struct {
	// Distinguishable makes tokens differ from every real identifier where the format
	// allows it: SSN tokens in the never-issued 9xx area, phone tokens in the reserved
	// N9X area codes, dates from the year 2200 on, NPIs starting 3-9, card numbers that
	// fail the Luhn check.
	Distinguishable bool
	// MinLen and MaxLen bound variable-length formats (digits, alnum, name, text).
	MinLen, MaxLen int
	// TokenizeDomain makes e-mail tokens replace the domain too (all labels but the
	// top-level one); by default the domain is kept.
	TokenizeDomain bool
}

// Builtins lists the names New recognises as built-in formats.
func Builtins() []string {
	return []string{"ssn", "phone", "email", "digits", "alnum", "name", "date", "npi", "credit_card", "text", "fhir_id"}
}

// SupportsDistinguishable reports whether a built-in format can make distinguishable tokens.
func SupportsDistinguishable(name string) bool {
	switch name {
	case "ssn", "phone", "date", "npi", "credit_card":
		return true
	}
	return false
}

// New returns the built-in format called name, or a pattern format when name is not a
// built-in (`9` digit, `A` upper, `a` lower, `X` alphanumeric, `\` escapes, anything
// else literal).
func New(name string, opts Options) (Format, error) {
	d := opts.Distinguishable && SupportsDistinguishable(name)
	switch name {
	case "ssn":
		return newSSN(d), nil
	case "phone":
		return &phone{distinguishable: d}, nil
	case "email":
		return &email{tokenizeDomain: opts.TokenizeDomain}, nil
	case "digits":
		return newRun("digits", Digit, opts)
	case "alnum":
		return newRun("alnum", Alnum, opts)
	case "name":
		return newName(opts)
	case "date":
		return &date{distinguishable: d}, nil
	case "npi":
		return &npi{distinguishable: d}, nil
	case "credit_card":
		return &card{distinguishable: d}, nil
	case "text":
		return newText(opts)
	case "fhir_id":
		return fhirID{}, nil
	}
	return NewPattern(name)
}

// Pattern is a fixed-shape format such as MRN-99999999.
type Pattern struct {
	noCheck
	coreIsNormal
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
	core, ok := p.tmpl.matchASCII(value)
	if !ok {
		return nil, mismatch(p.name, "expected %d characters in the pattern's shape", len(p.tmpl))
	}
	return &Parsed{Template: p.tmpl, Core: core, Normalized: string(core)}, nil
}

// ParseToken is Parse: pattern tokens share the values' shape.
func (p *Pattern) ParseToken(token string) (*Parsed, error) { return p.Parse(token) }

// ValidToken accepts every token of the right shape.
func (p *Pattern) ValidToken(Template, []rune) bool { return true }

// Distinguishable is false: a pattern gives no room to set tokens apart.
func (p *Pattern) Distinguishable() bool { return false }

// run is a variable-length string of one charset (digits, alnum).
type run struct {
	noCheck
	coreIsNormal
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
		return nil, fmt.Errorf("format %s: min_length %d exceeds max_length %d", name, r.min, r.max)
	}
	return r, nil
}

func (r *run) Name() string { return r.name }

func (r *run) Parse(value string) (*Parsed, error) {
	n := utf8.RuneCountInString(value)
	if n < r.min || n > r.max {
		return nil, mismatch(r.name, "length must be %d to %d", r.min, r.max)
	}
	t := make(Template, 0, n)
	core := make([]rune, 0, n)
	pos := 0
	for _, c := range value {
		pos++
		if !r.set.ContainsASCII(c) {
			return nil, mismatch(r.name, "character %d is not allowed", pos)
		}
		t = append(t, Slot{Set: r.set})
		core = append(core, c)
	}
	return &Parsed{Template: t, Core: core, Normalized: value}, nil
}

func (r *run) ParseToken(token string) (*Parsed, error) { return r.Parse(token) }
func (r *run) ValidToken(Template, []rune) bool         { return true }
func (r *run) Distinguishable() bool                    { return false }

// ssn is a US Social Security number, with or without dashes or spaces. Values follow
// the SSA's rules (area not 000, 666 or 900-999; group not 00; serial not 0000).
type ssn struct {
	noCheck
	coreIsNormal
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
		if core, ok := t.matchASCII(v); ok {
			return &Parsed{Template: t, Core: core, Normalized: string(core)}, nil
		}
	}
	return nil, mismatch("ssn", "expected 9 digits, as NNN-NN-NNNN or NNNNNNNNN")
}

func issuedSSN(c []rune) bool {
	return !runesAre(c[:3], "000") && !runesAre(c[:3], "666") && c[0] != '9' && ssnGroupSerial(c)
}

// ssnGroupSerial reports whether an SSN core's group (00) and serial (0000) were ever
// issued.
func ssnGroupSerial(c []rune) bool {
	return !runesAre(c[3:5], "00") && !runesAre(c[5:], "0000")
}

// runesAre reports whether rs spells the ASCII string s, without converting rs (a
// conversion allocates, and tokens are drawn and checked many times per value).
func runesAre(rs []rune, s string) bool {
	if len(rs) != len(s) {
		return false
	}
	for i, r := range rs {
		if r != rune(s[i]) {
			return false
		}
	}
	return true
}

func (s *ssn) Parse(value string) (*Parsed, error) {
	p, err := s.shape(value)
	if err != nil {
		return nil, err
	}
	if !issuedSSN(p.Core) {
		return nil, mismatch("ssn", "not a valid SSN (area, group or serial number never issued)")
	}
	return p, nil
}

func (s *ssn) ParseToken(token string) (*Parsed, error) {
	p, err := s.shape(token)
	if err != nil {
		return nil, err
	}
	if !s.ValidToken(p.Template, p.Core) {
		return nil, mismatch("ssn", "not a token of this class")
	}
	return p, nil
}

func (s *ssn) ValidToken(_ Template, c []rune) bool {
	if s.distinguishable {
		return c[0] == '9' && ssnGroupSerial(c)
	}
	return issuedSSN(c)
}

func (s *ssn) Distinguishable() bool { return s.distinguishable }

// TokenAlphabet: a distinguishable token's area starts with 9.
func (s *ssn) TokenAlphabet(n, pos int, a string) string {
	if s.distinguishable && n == 9 && pos == 0 {
		return "9"
	}
	return a
}

// phone is a NANP number: 10 digits (area code, exchange, line), optionally after a
// country code 1, with any of `()+-. ` as punctuation, which the token keeps. Area
// codes N9X are reserved and never assigned: distinguishable tokens use them.
type phone struct {
	noCheck
	coreIsNormal
	distinguishable bool
}

func (p *phone) Name() string { return "phone" }

func (p *phone) shape(v string) (*Parsed, error) {
	n := 0
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			n++
		case strings.ContainsRune("()+-. ", r):
		default:
			return nil, mismatch("phone", "only digits and ()+-. and spaces are allowed")
		}
	}
	if n != 10 && n != 11 {
		return nil, mismatch("phone", "expected 10 digits, optionally after country code 1")
	}
	t := make(Template, 0, len(v))
	core := make([]rune, 0, 10)
	skipCountry := n == 11
	for _, r := range v {
		if r >= '0' && r <= '9' {
			if skipCountry {
				if r != '1' {
					return nil, mismatch("phone", "an 11-digit number must start with country code 1")
				}
				skipCountry = false
				t = append(t, Slot{Lit: r})
				continue
			}
			t = append(t, Slot{Set: Digit})
			core = append(core, r)
			continue
		}
		t = append(t, Slot{Lit: r})
	}
	return &Parsed{Template: t, Core: core, Normalized: string(core)}, nil
}

// nanp checks the numbering plan: area code and exchange start with 2-9; reserved
// reports an N9X area code.
func nanp(c []rune) (valid, reserved bool) {
	return c[0] >= '2' && c[3] >= '2', c[1] == '9'
}

func (p *phone) Parse(value string) (*Parsed, error) {
	pp, err := p.shape(value)
	if err != nil {
		return nil, err
	}
	if valid, reserved := nanp(pp.Core); !valid || reserved {
		return nil, mismatch("phone", "not a valid NANP number (area code and exchange start with 2-9; N9X area codes are unassigned)")
	}
	return pp, nil
}

func (p *phone) ParseToken(token string) (*Parsed, error) {
	pp, err := p.shape(token)
	if err != nil {
		return nil, err
	}
	if !p.ValidToken(pp.Template, pp.Core) {
		return nil, mismatch("phone", "not a token of this class")
	}
	return pp, nil
}

func (p *phone) ValidToken(_ Template, c []rune) bool {
	valid, reserved := nanp(c)
	return valid && reserved == p.distinguishable
}

func (p *phone) Distinguishable() bool { return p.distinguishable }

// email tokenizes the local part (letters and digits, case-insensitively; `._%+-` kept)
// and keeps the domain, or with TokenizeDomain also every domain label but the last.
type email struct {
	noCheck
	tokenizeDomain bool
}

func (e *email) Name() string { return "email" }

func alnum(r rune) bool { return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

func (e *email) Parse(value string) (*Parsed, error) {
	at := strings.IndexByte(value, '@')
	if at < 1 || at != strings.LastIndexByte(value, '@') {
		return nil, mismatch("email", "expected one @ after a non-empty local part")
	}
	local, domain := value[:at], value[at+1:]
	if len(local) > 64 || len(domain) > 253 {
		return nil, mismatch("email", "local part at most 64 and domain at most 253 characters")
	}
	t := make(Template, 0, len(value))
	var core []rune
	for _, r := range local {
		switch {
		case alnum(r):
			t = append(t, Slot{Set: LowerAlnum})
			core = append(core, unicode.ToLower(r))
		case strings.ContainsRune("._%+-", r):
			t = append(t, Slot{Lit: r})
		default:
			return nil, mismatch("email", "local part may hold letters, digits and ._%%+- only")
		}
	}
	if len(core) == 0 {
		return nil, mismatch("email", "local part needs a letter or digit")
	}
	t = append(t, Slot{Lit: '@'})
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return nil, mismatch("email", "domain needs at least two labels")
	}
	for i, l := range labels {
		if len(l) == 0 || len(l) > 63 {
			return nil, mismatch("email", "domain labels must be 1 to 63 characters")
		}
		if i > 0 {
			t = append(t, Slot{Lit: '.'})
		}
		last := i == len(labels)-1
		for _, r := range l {
			switch {
			case alnum(r) && e.tokenizeDomain && !last:
				t = append(t, Slot{Set: LowerAlnum})
				core = append(core, unicode.ToLower(r))
			case alnum(r) || r == '-':
				t = append(t, Slot{Lit: unicode.ToLower(r)})
			default:
				return nil, mismatch("email", "domain may hold letters, digits and - only")
			}
		}
	}
	return &Parsed{Template: t, Core: core, Normalized: strings.ToLower(value)}, nil
}

func (e *email) ParseToken(token string) (*Parsed, error) { return e.Parse(token) }
func (e *email) ValidToken(Template, []rune) bool         { return true }
func (e *email) Distinguishable() bool                    { return false }

// name is a personal name: letters (any script; case and length kept), with spaces,
// hyphens, apostrophes, periods and commas kept. Tokens use the letters A-Z.
type name struct {
	noCheck
	min, max int
}

func newName(opts Options) (*name, error) {
	n := &name{min: opts.MinLen, max: opts.MaxLen}
	if n.min == 0 {
		n.min = 1
	}
	if n.max == 0 {
		n.max = 256
	}
	if n.min > n.max {
		return nil, fmt.Errorf("format name: min_length %d exceeds max_length %d", n.min, n.max)
	}
	return n, nil
}

func (n *name) Name() string { return "name" }

func (n *name) parse(value string, ascii bool) (*Parsed, error) {
	t := make(Template, 0, len(value))
	var core []rune
	for _, r := range value {
		switch {
		case unicode.IsLetter(r) && (!ascii || alnum(r) && !unicode.IsDigit(r)):
			set := Lower
			if unicode.IsUpper(r) || unicode.IsTitle(r) {
				set = Upper
			}
			t = append(t, Slot{Set: set})
			core = append(core, r)
		case strings.ContainsRune(" -'.,", r):
			t = append(t, Slot{Lit: r})
		default:
			return nil, mismatch("name", "only letters, spaces and -'., are allowed")
		}
	}
	if len(core) < n.min || len(core) > n.max {
		return nil, mismatch("name", "needs %d to %d letters", n.min, n.max)
	}
	return &Parsed{Template: t, Core: core, Normalized: strings.ToUpper(value)}, nil
}

func (n *name) Parse(value string) (*Parsed, error)      { return n.parse(value, false) }
func (n *name) ParseToken(token string) (*Parsed, error) { return n.parse(token, true) }
func (n *name) ValidToken(Template, []rune) bool         { return true }
func (n *name) Distinguishable() bool                    { return false }

// date is an ISO 8601 calendar date, YYYY-MM-DD, years 0001-9999. Tokens are valid
// dates; distinguishable tokens lie in the years 2200-9999 and values before 2200.
type date struct {
	noCheck
	coreIsNormal
	distinguishable bool
}

const distinguishableYear = 2200

var dateTemplate = func() Template { p, _ := NewPattern("9999-99-99"); return p.tmpl }()

func (d *date) Name() string { return "date" }

func validDate(c []rune) (year int, ok bool) {
	s := string(c)
	t, err := time.Parse("20060102", s)
	if err != nil || t.Year() < 1 {
		return 0, false
	}
	return t.Year(), true
}

func (d *date) shape(v string) (*Parsed, int, error) {
	core, ok := dateTemplate.matchASCII(v)
	if !ok {
		return nil, 0, mismatch("date", "expected YYYY-MM-DD")
	}
	y, ok := validDate(core)
	if !ok {
		return nil, 0, mismatch("date", "not a calendar date")
	}
	return &Parsed{Template: dateTemplate, Core: core, Normalized: string(core)}, y, nil
}

func (d *date) Parse(value string) (*Parsed, error) {
	p, y, err := d.shape(value)
	if err != nil {
		return nil, err
	}
	if d.distinguishable && y >= distinguishableYear {
		return nil, mismatch("date", "dates from %d on are reserved for tokens in this class", distinguishableYear)
	}
	return p, nil
}

func (d *date) ParseToken(token string) (*Parsed, error) {
	p, _, err := d.shape(token)
	if err != nil {
		return nil, err
	}
	if !d.ValidToken(p.Template, p.Core) {
		return nil, mismatch("date", "not a token of this class")
	}
	return p, nil
}

func (d *date) ValidToken(_ Template, c []rune) bool {
	y, ok := validDate(c)
	return ok && (!d.distinguishable || y >= distinguishableYear)
}

func (d *date) Distinguishable() bool { return d.distinguishable }

// luhnValid reports whether prefix ‖ digits passes the Luhn check (ISO/IEC 7812-1).
func luhnValid(prefix string, c []rune) bool {
	sum, double := 0, false
	add := func(r rune) {
		x := int(r - '0')
		if double {
			x *= 2
			if x > 9 {
				x -= 9
			}
		}
		sum += x
		double = !double
	}
	for i := len(c) - 1; i >= 0; i-- {
		add(c[i])
	}
	for i := len(prefix) - 1; i >= 0; i-- {
		add(rune(prefix[i]))
	}
	return sum%10 == 0
}

// setLuhn sets c[pos] so that prefix ‖ c passes the Luhn check, or, when invalid is
// true, so that it fails it.
func setLuhn(prefix string, c []rune, pos int, invalid bool) {
	for d := '0'; d <= '9'; d++ {
		c[pos] = d
		if luhnValid(prefix, c) {
			if invalid {
				c[pos] = '0' + (d-'0'+1)%10
			}
			return
		}
	}
}

// lastFree is the last position not fixed in clear, or -1.
func lastFree(n int, fixed []bool) int {
	for i := n - 1; i >= 0; i-- {
		if fixed == nil || !fixed[i] {
			return i
		}
	}
	return -1
}

// npi is a National Provider Identifier: 10 digits, the last a Luhn check digit
// computed over the prefix 80840 and the first nine. Issued NPIs start with 1 or 2;
// distinguishable tokens start with 3-9 and still pass the check.
type npi struct {
	coreIsNormal
	distinguishable bool
}

const npiPrefix = "80840"

var npiTemplate = func() Template { p, _ := NewPattern("9999999999"); return p.tmpl }()

func (n *npi) Name() string { return "npi" }

func (n *npi) shape(v string) (*Parsed, error) {
	core, ok := npiTemplate.matchASCII(v)
	if !ok {
		return nil, mismatch("npi", "expected 10 digits")
	}
	if !luhnValid(npiPrefix, core) {
		return nil, mismatch("npi", "check digit does not match")
	}
	return &Parsed{Template: npiTemplate, Core: core, Normalized: string(core)}, nil
}

func (n *npi) Parse(value string) (*Parsed, error) {
	p, err := n.shape(value)
	if err != nil {
		return nil, err
	}
	if p.Core[0] != '1' && p.Core[0] != '2' {
		return nil, mismatch("npi", "issued NPIs start with 1 or 2")
	}
	return p, nil
}

func (n *npi) ParseToken(token string) (*Parsed, error) {
	p, err := n.shape(token)
	if err != nil {
		return nil, err
	}
	if !n.ValidToken(p.Template, p.Core) {
		return nil, mismatch("npi", "not a token of this class")
	}
	return p, nil
}

func (n *npi) ValidToken(_ Template, c []rune) bool {
	issued := c[0] == '1' || c[0] == '2'
	return luhnValid(npiPrefix, c) && issued != n.distinguishable
}

func (n *npi) Distinguishable() bool                 { return n.distinguishable }
func (n *npi) CheckPosition(l int, fixed []bool) int { return lastFree(l, fixed) }
func (n *npi) Complete(c []rune, pos int)            { setLuhn(npiPrefix, c, pos, false) }

// card is a payment card number: 13 to 19 digits, spaces or dashes kept, Luhn-valid.
// Distinguishable tokens deliberately fail the Luhn check, so no payment system takes
// them for a card.
type card struct {
	coreIsNormal
	distinguishable bool
}

func (c *card) Name() string { return "credit_card" }

func (c *card) shape(v string) (*Parsed, error) {
	t := make(Template, 0, len(v))
	core := make([]rune, 0, 19)
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			t = append(t, Slot{Set: Digit})
			core = append(core, r)
		case r == ' ' || r == '-':
			t = append(t, Slot{Lit: r})
		default:
			return nil, mismatch("credit_card", "only digits, spaces and dashes are allowed")
		}
	}
	if len(core) < 13 || len(core) > 19 {
		return nil, mismatch("credit_card", "expected 13 to 19 digits")
	}
	return &Parsed{Template: t, Core: core, Normalized: string(core)}, nil
}

func (c *card) Parse(value string) (*Parsed, error) {
	p, err := c.shape(value)
	if err != nil {
		return nil, err
	}
	if !luhnValid("", p.Core) {
		return nil, mismatch("credit_card", "check digit does not match")
	}
	return p, nil
}

func (c *card) ParseToken(token string) (*Parsed, error) {
	p, err := c.shape(token)
	if err != nil {
		return nil, err
	}
	if !c.ValidToken(p.Template, p.Core) {
		return nil, mismatch("credit_card", "not a token of this class")
	}
	return p, nil
}

func (c *card) ValidToken(_ Template, core []rune) bool {
	return luhnValid("", core) != c.distinguishable
}

func (c *card) Distinguishable() bool                 { return c.distinguishable }
func (c *card) CheckPosition(l int, fixed []bool) int { return lastFree(l, fixed) }
func (c *card) Complete(core []rune, pos int)         { setLuhn("", core, pos, c.distinguishable) }
