package format_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/format"
)

// tc is one value (or token) given to a format, and what the format must make of it.
type tc struct {
	name string
	in   string
	// core is the tokenizable characters, in order, when in is accepted.
	core string
	// norm is the normalized form when it is not the core.
	norm string
	// render is what the template renders from the core when it is not in itself.
	render string
	// reason is a fragment of the rejection reason; empty when in is accepted.
	reason string
}

// parser is Format.Parse or Format.ParseToken.
type parser func(string) (*format.Parsed, error)

// mustNew builds a format or fails the test.
func mustNew(t *testing.T, name string, opts format.Options) format.Format {
	t.Helper()
	f, err := format.New(name, opts)
	require.NoError(t, err)
	return f
}

// runCases checks every case against parse, in parallel subtests.
func runCases(t *testing.T, f format.Format, parse parser, cases []tc) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, err := parse(c.in)
			if c.reason != "" {
				assert.Nil(t, p)
				requireMismatch(t, err, f.Name(), c.reason, c.in)
				return
			}
			require.NoError(t, err)
			assertParsed(t, f, p, c)
		})
	}
}

// assertParsed checks an accepted value's split, normal form and rendering.
func assertParsed(t *testing.T, f format.Format, p *format.Parsed, c tc) {
	t.Helper()
	require.NotNil(t, p)
	assert.Equal(t, c.core, string(p.Core), "core")
	norm := c.norm
	if norm == "" {
		norm = c.core
	}
	assert.Equal(t, norm, p.Normalized, "normalized")
	assert.Len(t, p.Template.Sets(), len(p.Core), "one tokenizable slot per core symbol")
	render := c.render
	if render == "" {
		render = c.in
	}
	assert.Equal(t, render, p.Template.Render(p.Core), "the template renders the value back from its core")
	if n, ok := f.(format.CoreNormalizer); ok {
		assert.Equal(t, p.Normalized, n.NormalizeCore(p.Core), "NormalizeCore agrees with Parse")
	}
}

// requireMismatch checks that err is the format's refusal for reason and does not
// quote the value (PHI never reaches error messages).
func requireMismatch(t *testing.T, err error, formatName, reason, value string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, format.ErrMismatch)
	var fe *format.Error
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, formatName, fe.Format)
	assert.Contains(t, fe.Reason, reason)
	if len(strings.TrimSpace(value)) >= 4 {
		assert.NotContains(t, err.Error(), value, "an error must never quote the value")
	}
}

// luhnOK is an independent Luhn check (ISO/IEC 7812-1) over the decimal string s.
func luhnOK(s string) bool {
	sum := 0
	for i := 0; i < len(s); i++ {
		x := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			x *= 2
			if x > 9 {
				x -= 9
			}
		}
		sum += x
	}
	return sum%10 == 0
}
