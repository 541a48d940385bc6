package format_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/phivault/tokenizer/internal/format"
)

// FuzzPattern compiles arbitrary patterns (configuration) and parses arbitrary values
// (untrusted input) with them: nothing panics, refusals are *Error, and an accepted
// value renders back exactly from its core.
func FuzzPattern(f *testing.F) {
	seeds := [][2]string{
		{"MRN-99999999", "MRN-12345678"},
		{"AAA-aaa-XXX", "ABC-def-x9Z"},
		{`P\AT-9\\9`, `PAT-1\2`},
		{"№ 999", "№ 123"},
		{`999\`, "123"},
		{"", ""},
		{"9", "\xff"},
		{"X-X", "a\xffb"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, value string) {
		if !utf8.ValidString(pattern) || strings.ContainsRune(pattern, utf8.RuneError) {
			// A literal U+FFFD would match any invalid byte (noted in the package tests'
			// report); patterns are configuration, so leave such patterns out.
			return
		}
		p, err := format.NewPattern(pattern)
		if err != nil {
			return
		}
		if len(p.Template().Sets()) == 0 {
			t.Fatal("a compiled pattern has a tokenizable position")
		}
		parsed, err := p.Parse(value)
		if err != nil {
			var fe *format.Error
			if !errors.As(err, &fe) || !errors.Is(err, format.ErrMismatch) {
				t.Fatalf("refusal is not a *format.Error: %v", err)
			}
			return
		}
		if !utf8.ValidString(value) {
			t.Fatal("accepted invalid UTF-8")
		}
		if got := parsed.Template.Render(parsed.Core); got != value {
			t.Fatalf("render of the core differs from the value: %q != %q", got, value)
		}
		if !parsed.Template.Fits(parsed.Core) {
			t.Fatal("an accepted core does not fit its own template")
		}
		if parsed.Normalized != string(parsed.Core) {
			t.Fatal("a pattern's normal form is its core")
		}
	})
}

// FuzzBuiltins parses arbitrary input with every built-in format: nothing panics, and
// for the formats that make distinguishable tokens no input is both a value and a token.
func FuzzBuiltins(f *testing.F) {
	for _, s := range []string{"123-45-6789", "900-12-3456", "(212) 555-0123", "+1 292 555 0123",
		"john.doe@example.com", "José Núñez", "2199-12-31", "2200-01-01", "1234567893",
		"3123456782", "4111 1111 1111 1111", "4111111111111112", "", "\x00", "٢١٢٥٥٥٠١٢٣"} {
		f.Add(s)
	}
	type pair struct{ plain, dist format.Format }
	var formats []pair
	for _, name := range format.Builtins() {
		plain, err := format.New(name, format.Options{})
		if err != nil {
			f.Fatal(err)
		}
		dist, err := format.New(name, format.Options{Distinguishable: true, TokenizeDomain: true})
		if err != nil {
			f.Fatal(err)
		}
		formats = append(formats, pair{plain, dist})
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, fp := range formats {
			v, verr := fp.plain.Parse(in)
			_, _ = fp.plain.ParseToken(in)
			dv, dverr := fp.dist.Parse(in)
			_, dterr := fp.dist.ParseToken(in)
			if verr == nil && len(v.Template.Sets()) != len(v.Core) {
				t.Fatalf("%s: template and core disagree", fp.plain.Name())
			}
			if fp.dist.Distinguishable() && dverr == nil && dterr == nil {
				t.Fatalf("%s: an input is both a value and a distinguishable token", fp.dist.Name())
			}
			if dverr == nil && fp.dist.Distinguishable() && fp.dist.ValidToken(dv.Template, dv.Core) {
				t.Fatalf("%s: a value's core passes as a distinguishable token", fp.dist.Name())
			}
		}
	})
}
