// Package format parses values into the characters a token replaces and the literals it
// keeps, and renders tokens back in the value's shape. Errors never contain the value.
package format

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Charset is the set of characters a tokenizable position may hold.
type Charset uint8

// Charsets of tokenizable positions.
const (
	Literal Charset = iota // not tokenizable: kept as is
	Digit                  // 0-9
	Upper                  // A-Z
	Lower                  // a-z
	Alnum                  // 0-9 A-Z a-z
)

// Alphabet returns the symbols of cs, in a fixed order (the FF1 numeral order).
func (cs Charset) Alphabet() string {
	switch cs {
	case Digit:
		return "0123456789"
	case Upper:
		return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	case Lower:
		return "abcdefghijklmnopqrstuvwxyz"
	case Alnum:
		return "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	}
	return ""
}

// Contains reports whether c is in cs.
func (cs Charset) Contains(c byte) bool {
	switch cs {
	case Digit:
		return c >= '0' && c <= '9'
	case Upper:
		return c >= 'A' && c <= 'Z'
	case Lower:
		return c >= 'a' && c <= 'z'
	case Alnum:
		return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
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

// Core extracts the tokenizable characters of value, which must fit t.
func (t Template) Core(value string) []byte {
	core := make([]byte, 0, len(t))
	i := 0
	for _, s := range t {
		r, n := utf8.DecodeRuneInString(value[i:])
		if s.Set != Literal {
			core = append(core, byte(r))
		}
		i += n
	}
	return core
}

// Render fills t's tokenizable positions with core, in order.
func (t Template) Render(core []byte) string {
	var sb strings.Builder
	sb.Grow(len(t) + 4)
	j := 0
	for _, s := range t {
		if s.Set == Literal {
			sb.WriteRune(s.Lit)
			continue
		}
		sb.WriteByte(core[j])
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

// match reports whether value fits t exactly.
func (t Template) match(value string) bool {
	i := 0
	for _, s := range t {
		if i >= len(value) {
			return false
		}
		r, n := utf8.DecodeRuneInString(value[i:])
		if s.Set == Literal {
			if r != s.Lit {
				return false
			}
		} else if n != 1 || !s.Set.Contains(value[i]) {
			return false
		}
		i += n
	}
	return i == len(value)
}

// Parsed is a value split by its format.
type Parsed struct {
	// Template is the shape the value was given in; tokens are rendered in it.
	Template Template
	// Core is the tokenizable characters, in order.
	Core []byte
	// Normalized is the canonical form used for static fingerprints, so that the same
	// identifier sent in two shapes (an SSN with and without dashes) is one value.
	Normalized string
}

// Format parses values of one kind and constrains the tokens made for them.
type Format interface {
	// Name is the format's name as configured ("ssn", or the pattern itself).
	Name() string
	// Parse validates value. Its errors are *Error and never contain the value.
	Parse(value string) (*Parsed, error)
	// ParseToken validates a token of this format; tokens may lie where values may not
	// (e.g. SSN tokens in the never-issued 9xx area).
	ParseToken(token string) (*Parsed, error)
	// ValidToken reports whether core, rendered in tmpl, is an acceptable token: it
	// enforces distinguishability and check digits.
	ValidToken(tmpl Template, core []byte) bool
	// Distinguishable reports whether every valid token differs from every valid value.
	Distinguishable() bool
}

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
