package format_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/format"
)

func TestCharsetAlphabets(t *testing.T) {
	t.Parallel()
	const (
		digits = "0123456789"
		upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		lower  = "abcdefghijklmnopqrstuvwxyz"
	)
	tests := []struct {
		name     string
		cs       format.Charset
		alphabet string
		fpe      string
	}{
		{"literal", format.Literal, "", ""},
		{"digit", format.Digit, digits, digits},
		{"upper", format.Upper, upper, upper},
		{"lower shares the letters with upper for FF1", format.Lower, lower, upper},
		{"alnum", format.Alnum, digits + upper + lower, digits + upper + lower},
		{"lower alnum", format.LowerAlnum, digits + lower, digits + lower},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.alphabet, tt.cs.Alphabet())
			assert.Equal(t, tt.fpe, tt.cs.FPEAlphabet())
			for _, r := range tt.cs.Alphabet() {
				assert.True(t, tt.cs.ContainsASCII(r), "alphabet symbol %q", r)
			}
		})
	}
}

func TestCharsetContainsASCII(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cs   format.Charset
		in   string // every rune is in cs
		out  string // no rune is in cs
	}{
		{"literal holds nothing", format.Literal, "", "0aA-"},
		{"digit", format.Digit, "09", "aA/:-٣９"},
		{"upper", format.Upper, "AZ", "az0@[É"},
		{"lower", format.Lower, "az", "AZ0`{é"},
		{"alnum", format.Alnum, "09AZaz", "-_ é９"},
		{"lower alnum", format.LowerAlnum, "09az", "AZ-é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, r := range tt.in {
				assert.True(t, tt.cs.ContainsASCII(r), "%q", r)
			}
			for _, r := range tt.out {
				assert.False(t, tt.cs.ContainsASCII(r), "%q", r)
			}
		})
	}
}

func TestTemplateRenderAndFits(t *testing.T) {
	t.Parallel()
	lit := func(r rune) format.Slot { return format.Slot{Lit: r} }
	set := func(cs format.Charset) format.Slot { return format.Slot{Set: cs} }
	tmpl := format.Template{lit('#'), set(format.Digit), set(format.Upper), lit('-'), set(format.Lower), set(format.Alnum), set(format.LowerAlnum), lit('é')}
	assert.Equal(t, []format.Charset{format.Digit, format.Upper, format.Lower, format.Alnum, format.LowerAlnum}, tmpl.Sets())

	tests := []struct {
		name   string
		core   string
		fits   bool
		render string // when fits
	}{
		{"letters take their slot's case", "7qQzZ", true, "#7Q-qzzé"},
		{"alnum keeps case", "7AbAb", true, "#7A-bAbé"},
		{"too short", "7QQz", false, ""},
		{"too long", "7QQzZZ", false, ""},
		{"letter in a digit slot", "aQQzZ", false, ""},
		{"digit in a letter slot", "71QzZ", false, ""},
		{"non-ASCII letter", "7ÉQzZ", false, ""},
		{"symbol in an alnum slot", "7QQ-Z", false, ""},
		{"upper-case in a lower-alnum slot fits (case-insensitive)", "7QQzZ", true, "#7Q-qzzé"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.fits, tmpl.Fits([]rune(tt.core)))
			if tt.fits {
				assert.Equal(t, tt.render, tmpl.Render([]rune(tt.core)))
			}
		})
	}
}

func TestErrorMessageAndUnwrap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *format.Error
		want string
	}{
		{"without reason", &format.Error{Format: "ssn"}, "does not fit format ssn"},
		{"with reason", &format.Error{Format: "npi", Reason: "expected 10 digits"}, "does not fit format npi: expected 10 digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, tt.err.Error())
			assert.True(t, errors.Is(tt.err, format.ErrMismatch))
		})
	}
}

func TestNewPatternRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		msg     string
	}{
		{"empty", "", "neither a built-in format"},
		{"literals only", "MRN-", "neither a built-in format"},
		{"every class escaped", `\9\A\a\X`, "neither a built-in format"},
		{"lone trailing backslash", `999\`, "lone backslash"},
		{"a word without class letters", "unknown", "neither a built-in format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := format.NewPattern(tt.pattern)
			require.Error(t, err)
			assert.Nil(t, p)
			assert.Contains(t, err.Error(), tt.msg)
			f, err := format.New(tt.pattern, format.Options{})
			require.Error(t, err, "New falls back to the pattern and fails the same way")
			assert.Nil(t, f)
		})
	}
}

func TestPatternShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		sets    []format.Charset
		length  int
	}{
		{"MRN", "MRN-99999999", []format.Charset{format.Digit, format.Digit, format.Digit, format.Digit, format.Digit, format.Digit, format.Digit, format.Digit}, 12},
		{"every class", "9AaX", []format.Charset{format.Digit, format.Upper, format.Lower, format.Alnum}, 4},
		{"escapes make literals", `\9\A\a\X\\9`, []format.Charset{format.Digit}, 6},
		{"non-ASCII literals count as one position", "№·9", []format.Charset{format.Digit}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := format.NewPattern(tt.pattern)
			require.NoError(t, err)
			assert.Equal(t, tt.pattern, p.Name())
			assert.Len(t, p.Template(), tt.length)
			assert.Equal(t, tt.sets, p.Template().Sets())
			assert.False(t, p.Distinguishable())
			assert.Equal(t, -1, p.CheckPosition(len(tt.sets), nil))
		})
	}
}

func TestPatternParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		cases   []tc
	}{
		{"MRN-99999999", []tc{
			{name: "valid", in: "MRN-12345678", core: "12345678"},
			{name: "zeros", in: "MRN-00000000", core: "00000000"},
			{name: "one digit short", in: "MRN-1234567", reason: "expected 12 characters"},
			{name: "one digit long", in: "MRN-123456789", reason: "expected 12 characters"},
			{name: "literal in another case", in: "mrn-12345678", reason: "expected 12 characters"},
			{name: "letter in a digit slot", in: "MRN-1234567a", reason: "expected 12 characters"},
			{name: "full-width digit", in: "MRN-１2345678", reason: "expected 12 characters"},
			{name: "other separator", in: "MRN_12345678", reason: "expected 12 characters"},
			{name: "leading space", in: " MRN-12345678", reason: "expected 12 characters"},
			{name: "empty", in: "", reason: "expected 12 characters"},
		}},
		{"AAA-aaa-XXX", []tc{
			{name: "valid", in: "ABC-def-x9Z", core: "ABCdefx9Z"},
			{name: "lower in an upper slot", in: "aBC-def-x9Z", reason: "expected 11 characters"},
			{name: "upper in a lower slot", in: "ABC-dEf-x9Z", reason: "expected 11 characters"},
			{name: "symbol in an alnum slot", in: "ABC-def-x_Z", reason: "expected 11 characters"},
			{name: "accented letter", in: "ÀBC-def-x9Z", reason: "expected 11 characters"},
		}},
		{`P\AT-9\\9`, []tc{
			{name: "escaped class letters are literals", in: `PAT-1\2`, core: "12"},
			{name: "escaped literal mismatch", in: `PBT-1\2`, reason: "expected 7 characters"},
			{name: "missing escaped backslash", in: "PAT-12", reason: "expected 7 characters"},
		}},
		{"№ 999", []tc{
			{name: "non-ASCII literal", in: "№ 123", core: "123"},
			{name: "ASCII stand-in for the literal", in: "N 123", reason: "expected 5 characters"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			t.Parallel()
			f := mustNew(t, tt.pattern, format.Options{Distinguishable: true})
			assert.False(t, f.Distinguishable(), "patterns cannot be distinguishable")
			runCases(t, f, f.Parse, tt.cases)
			runCases(t, f, f.ParseToken, tt.cases)
		})
	}
}

func TestPatternTokensAlwaysValid(t *testing.T) {
	t.Parallel()
	f := mustNew(t, "MRN-99999999", format.Options{})
	p, err := f.Parse("MRN-12345678")
	require.NoError(t, err)
	assert.True(t, f.ValidToken(p.Template, []rune("87654321")))
	assert.True(t, f.ValidToken(p.Template, p.Core), "a pattern token may even equal its value")
}
