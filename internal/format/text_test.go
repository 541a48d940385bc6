package format_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/format"
)

func TestTextFormat(t *testing.T) {
	t.Parallel()
	f, err := format.New("text", format.Options{})
	require.NoError(t, err)
	tests := []struct {
		name, value string
		core        string
		ok          bool
	}{
		{"address line", "12 Elm St, Apt 4B", "12ElmStApt4B", true},
		{"telecom", "617-555-0142", "6175550142", true},
		{"email shaped", "ana.rivera@example.org", "anariveraexampleorg", true},
		{"accented name", "José Müller", "JoséMüller", true},
		{"CJK", "山田 太郎", "山田太郎", true},
		{"only punctuation", "-- / --", "", false},
		{"control character", "line\nbreak", "", false},
		{"replacement character", "bad\uFFFDbyte", "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := f.Parse(tt.value)
			if !tt.ok {
				require.Error(t, err)
				assert.ErrorIs(t, err, format.ErrMismatch)
				if tt.value != "" {
					assert.NotContains(t, err.Error(), tt.value)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.core, string(p.Core))
			assert.Equal(t, tt.value, p.Normalized, "exact, case-sensitive matching")
			token := p.Template.Render(p.Core)
			assert.Equal(t, tt.value, token, "rendering the value's own core gives the value back")
		})
	}
}

func TestTextTokensKeepTheShape(t *testing.T) {
	t.Parallel()
	f, err := format.New("text", format.Options{})
	require.NoError(t, err)
	p, err := f.Parse("Apt 4B, Zoë")
	require.NoError(t, err)
	token := p.Template.Render([]rune("xkq9abcd"))
	assert.Equal(t, "Xkq 9A, Bcd", token, "letters keep their case class, digits stay digits, separators stay")
	tp, err := f.ParseToken(token)
	require.NoError(t, err)
	assert.Equal(t, token, tp.Normalized)
	moved, err := f.ParseToken("Xk q9A, Bcd")
	require.NoError(t, err)
	assert.NotEqual(t, tp.Normalized, moved.Normalized, "separators are part of what a token is")
}

func TestFHIRIDFormat(t *testing.T) {
	t.Parallel()
	f, err := format.New("fhir_id", format.Options{})
	require.NoError(t, err)
	uuid, err := f.Parse("6f1c2b7e-3d4a-4e5f-8a9b-0c1d2e3f4a5b")
	require.NoError(t, err)
	for _, s := range uuid.Template.Sets() {
		assert.Equal(t, format.LowerHex, s, "a UUID's token is hex in the same places")
	}
	token := uuid.Template.Render([]rune("0123456789abcdef0123456789abcdef"))
	assert.Equal(t, "01234567-89ab-cdef-0123-456789abcdef", token)
	plain, err := f.Parse("example.Patient-1")
	require.NoError(t, err)
	assert.Equal(t, []format.Charset{format.Lower, format.Lower, format.Lower, format.Lower, format.Lower, format.Lower, format.Lower,
		format.Upper, format.Lower, format.Lower, format.Lower, format.Lower, format.Lower, format.Lower, format.Digit}, plain.Template.Sets())
	for _, bad := range []string{"", "has space", "slash/id", "x" + string(make([]byte, 64))} {
		_, err := f.Parse(bad)
		assert.ErrorIs(t, err, format.ErrMismatch, "%q", bad)
	}
	_, err = f.Parse("----")
	assert.Error(t, err, "an id needs a letter or digit")
}
