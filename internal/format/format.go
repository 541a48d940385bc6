// Package format parses values into the characters a token replaces and the literals it
// keeps, and renders tokens back in the value's shape. Errors never contain the value.
package format

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Charset is the set of characters a tokenizable position may hold in a token.
type Charset uint8

// Charsets of tokenizable positions.
const (
	Literal    Charset = iota // not tokenizable: kept as is
	Digit                     // 0-9
	Upper                     // A-Z (a value may hold any upper-case letter)
	Lower                     // a-z (a value may hold any lower-case letter)
	Alnum                     // 0-9 A-Z a-z
	LowerAlnum                // 0-9 a-z (e-mail local parts: case-insensitive)
	LowerHex                  // 0-9 a-f (UUIDs)
)

const (
	digits  = "0123456789"
	upper   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lower   = "abcdefghijklmnopqrstuvwxyz"
	letters = upper
)

// Alphabet returns the symbols a token may hold at a position of cs, in a fixed order.
func (cs Charset) Alphabet() string {
	switch cs {
	case Digit:
		return digits
	case Upper:
		return upper
	case Lower:
		return lower
	case Alnum:
		return digits + upper + lower
	case LowerAlnum:
		return digits + lower
	case LowerHex:
		return digits + "abcdef"
	}
	return ""
}

// FPEAlphabet is the alphabet FF1 runs over for positions of cs. Upper and lower-case
// positions share the 26 letters, so that a name's token does not depend on its case;
// the template puts the case back.
func (cs Charset) FPEAlphabet() string {
	if cs == Upper || cs == Lower {
		return letters
	}
	return cs.Alphabet()
}

// ContainsASCII reports whether r is one of cs's token symbols.
func (cs Charset) ContainsASCII(r rune) bool {
	switch cs {
	case Digit:
		return r >= '0' && r <= '9'
	case Upper:
		return r >= 'A' && r <= 'Z'
	case Lower:
		return r >= 'a' && r <= 'z'
	case Alnum:
		return r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'
	case LowerAlnum:
		return r >= '0' && r <= '9' || r >= 'a' && r <= 'z'
	case LowerHex:
		return r >= '0' && r <= '9' || r >= 'a' && r <= 'f'
	}
	return false
}

// Slot is one position of a template: a literal rune, or a tokenizable charset.
type Slot struct {
	Set Charset
	Lit rune
}

// Template is the shape of one value: which positions are kept and which are replaced.
type Template []Slot

// Render fills t's tokenizable positions with core, in order. Letters take the case of
// their slot.
func (t Template) Render(core []rune) string {
	var sb strings.Builder
	sb.Grow(len(t) + 4)
	j := 0
	for _, s := range t {
		switch s.Set {
		case Literal:
			sb.WriteRune(s.Lit)
			continue
		case Upper:
			sb.WriteRune(unicode.ToUpper(core[j]))
		case Lower, LowerAlnum, LowerHex:
			sb.WriteRune(unicode.ToLower(core[j]))
		default:
			sb.WriteRune(core[j])
		}
		j++
	}
	return sb.String()
}

// Sets lists the charset of each tokenizable position.
func (t Template) Sets() []Charset {
	out := make([]Charset, 0, len(t))
	for _, s := range t {
		if s.Set != Literal {
			out = append(out, s.Set)
		}
	}
	return out
}

// Fits reports whether core can be rendered in t: each symbol is in its slot's charset
// (letters in either case for letter slots).
func (t Template) Fits(core []rune) bool {
	sets := t.Sets()
	if len(sets) != len(core) {
		return false
	}
	for i, cs := range sets {
		r := core[i]
		if cs == Upper || cs == Lower {
			r = unicode.ToUpper(r)
			cs = Upper
		}
		if cs == LowerAlnum || cs == LowerHex {
			r = unicode.ToLower(r)
		}
		if !cs.ContainsASCII(r) {
			return false
		}
	}
	return true
}

// matchASCII splits value by a fixed template; tokenizable positions must hold ASCII
// symbols of their charset.
func (t Template) matchASCII(value string) ([]rune, bool) {
	core := make([]rune, 0, len(t))
	i := 0
	for _, s := range t {
		if i >= len(value) {
			return nil, false
		}
		r, n := utf8.DecodeRuneInString(value[i:])
		if s.Set == Literal {
			if r != s.Lit {
				return nil, false
			}
		} else {
			if !s.Set.ContainsASCII(r) {
				return nil, false
			}
			core = append(core, r)
		}
		i += n
	}
	return core, i == len(value)
}

// Parsed is a value (or token) split by its format.
type Parsed struct {
	// Template is the shape the value was given in; tokens are rendered in it.
	Template Template
	// Core is the tokenizable characters, in order.
	Core []rune
	// Normalized is the canonical form used for static fingerprints, so that the same
	// identifier sent in two shapes (an SSN with and without dashes) is one value.
	Normalized string
}

// Format parses values of one kind and constrains the tokens made for them.
type Format interface {
	// Name is the format's name as configured ("ssn", or the pattern itself).
	Name() string
	// Parse validates a value. Its errors are *Error and never contain the value.
	Parse(value string) (*Parsed, error)
	// ParseToken validates a token; tokens may lie where values may not (e.g. SSN tokens
	// in the never-issued 9xx area).
	ParseToken(token string) (*Parsed, error)
	// ValidToken reports whether core, in tmpl, is an acceptable token: it enforces
	// distinguishability, check digits and calendar validity.
	ValidToken(tmpl Template, core []rune) bool
	// Distinguishable reports whether every valid token differs from every valid value.
	Distinguishable() bool
	// CheckPosition returns the core position that Complete derives from the others
	// (a check digit), given the positions fixed (preserved) in clear; -1 when none.
	CheckPosition(n int, fixed []bool) int
	// Complete sets the derived position pos of core.
	Complete(core []rune, pos int)
}

// TokenNarrower is implemented by formats whose valid tokens take fewer characters than
// the position's set at some core positions (a distinguishable SSN's area starts with
// 9): a random draw takes its characters from TokenAlphabet, which returns a (the set's
// alphabet) where it does not narrow. Every valid token must be drawable from the
// narrowed alphabets, so that draws stay uniform over the valid tokens; the draw is
// still checked by ValidToken.
type TokenNarrower interface {
	TokenAlphabet(n, pos int, a string) string
}

// CoreNormalizer is implemented by formats whose normalized form is the core itself,
// so that a generated token's normalized form needs no rendering and parsing.
type CoreNormalizer interface {
	NormalizeCore(core []rune) string
}

// coreIsNormal is embedded by such formats.
type coreIsNormal struct{}

// NormalizeCore returns the core as a string.
func (coreIsNormal) NormalizeCore(core []rune) string { return string(core) }

// noCheck is embedded by formats without a derived position.
type noCheck struct{}

func (noCheck) CheckPosition(int, []bool) int { return -1 }
func (noCheck) Complete([]rune, int)          {}

// ErrMismatch is wrapped by every Error: the value does not fit the format.
var ErrMismatch = errors.New("value does not fit the format")

// Error explains why a value or token does not fit a format, without quoting it.
type Error struct {
	Format string
	Reason string
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("does not fit format %s", e.Format)
	}
	return fmt.Sprintf("does not fit format %s: %s", e.Format, e.Reason)
}

// Unwrap makes errors.Is(err, ErrMismatch) true.
func (e *Error) Unwrap() error { return ErrMismatch }

func mismatch(format, reason string, args ...any) error {
	return &Error{Format: format, Reason: fmt.Sprintf(reason, args...)}
}
