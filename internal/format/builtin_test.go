package format_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/format"
)

func TestBuiltins(t *testing.T) {
	t.Parallel()
	want := map[string]bool{"ssn": true, "phone": true, "email": false, "digits": false, "alnum": false,
		"name": false, "date": true, "npi": true, "credit_card": true, "text": false, "fhir_id": false}
	assert.ElementsMatch(t, mapKeys(want), format.Builtins())
	for _, name := range format.Builtins() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, want[name], format.SupportsDistinguishable(name))
			plain := mustNew(t, name, format.Options{})
			assert.Equal(t, name, plain.Name())
			assert.False(t, plain.Distinguishable(), "distinguishable only when asked")
			d := mustNew(t, name, format.Options{Distinguishable: true})
			assert.Equal(t, want[name], d.Distinguishable(), "asked for, and supported")
		})
	}
	assert.False(t, format.SupportsDistinguishable("MRN-99999999"))
}

func mapKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestNewRejectsBadLengthBounds(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"digits", "alnum", "name"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f, err := format.New(name, format.Options{MinLen: 5, MaxLen: 4})
			require.Error(t, err)
			assert.Nil(t, f)
			assert.Contains(t, err.Error(), "min_length 5 exceeds max_length 4")
			_, err = format.New(name, format.Options{MinLen: 4, MaxLen: 4})
			assert.NoError(t, err, "min equal to max is a fixed length")
		})
	}
}

func TestSSN(t *testing.T) {
	t.Parallel()
	values := []tc{
		{name: "dashes", in: "123-45-6789", core: "123456789"},
		{name: "bare", in: "123456789", core: "123456789"},
		{name: "spaces", in: "123 45 6789", core: "123456789"},
		{name: "highest issued area", in: "899-99-9999", core: "899999999"},
		{name: "area next to 666", in: "665-01-0001", core: "665010001"},
		{name: "8 digits", in: "123-45-678", reason: "expected 9 digits"},
		{name: "10 digits", in: "1234567890", reason: "expected 9 digits"},
		{name: "wrong grouping", in: "123-456-789", reason: "expected 9 digits"},
		{name: "mixed separators", in: "123-45 6789", reason: "expected 9 digits"},
		{name: "letter", in: "12a-45-6789", reason: "expected 9 digits"},
		{name: "full-width digits", in: "１２３-45-6789", reason: "expected 9 digits"},
		{name: "leading space", in: " 123-45-6789", reason: "expected 9 digits"},
		{name: "trailing newline", in: "123-45-6789\n", reason: "expected 9 digits"},
		{name: "empty", in: "", reason: "expected 9 digits"},
		{name: "area 000", in: "000-12-3456", reason: "never issued"},
		{name: "area 666", in: "666-12-3456", reason: "never issued"},
		{name: "area 900", in: "900-12-3456", reason: "never issued"},
		{name: "area 999", in: "999-12-3456", reason: "never issued"},
		{name: "group 00", in: "123-00-4567", reason: "never issued"},
		{name: "serial 0000", in: "123-45-0000", reason: "never issued"},
	}
	t.Run("values", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "ssn", format.Options{})
		runCases(t, f, f.Parse, values)
	})
	t.Run("values with distinguishable tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "ssn", format.Options{Distinguishable: true})
		runCases(t, f, f.Parse, values)
	})
	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "ssn", format.Options{})
		runCases(t, f, f.ParseToken, []tc{
			{name: "issued shape", in: "123-45-6789", core: "123456789"},
			{name: "9xx area is not a plain token", in: "900-12-3456", reason: "not a token of this class"},
			{name: "area 666", in: "666-12-3456", reason: "not a token of this class"},
			{name: "shape", in: "12-345-6789", reason: "expected 9 digits"},
		})
	})
	t.Run("distinguishable tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "ssn", format.Options{Distinguishable: true})
		runCases(t, f, f.ParseToken, []tc{
			{name: "area 900", in: "900-12-3456", core: "900123456"},
			{name: "area 999 bare", in: "999999999", core: "999999999"},
			{name: "issued area", in: "123-45-6789", reason: "not a token of this class"},
			{name: "area 666", in: "666-12-3456", reason: "not a token of this class"},
			{name: "group 00", in: "900-00-1234", reason: "not a token of this class"},
			{name: "serial 0000", in: "900-12-0000", reason: "not a token of this class"},
		})
	})
}

func TestPhone(t *testing.T) {
	t.Parallel()
	values := []tc{
		{name: "parentheses", in: "(212) 555-0123", core: "2125550123"},
		{name: "dashes", in: "212-555-0123", core: "2125550123"},
		{name: "dots", in: "212.555.0123", core: "2125550123"},
		{name: "bare", in: "2125550123", core: "2125550123"},
		{name: "country code kept as a literal", in: "+1 212 555 0123", core: "2125550123"},
		{name: "country code bare", in: "12125550123", core: "2125550123"},
		{name: "exchange 2xx", in: "212-200-0000", core: "2122000000"},
		{name: "9 digits", in: "212-555-012", reason: "expected 10 digits"},
		{name: "12 digits", in: "+44 20 7946 09581", reason: "expected 10 digits"},
		{name: "11 digits not after 1", in: "212-555-01234", reason: "country code 1"},
		{name: "extension", in: "212-555-0123 x12", reason: "only digits"},
		{name: "slashes", in: "212/555/0123", reason: "only digits"},
		{name: "Arabic-Indic digits", in: "٢١٢٥٥٥٠١٢٣", reason: "only digits"},
		{name: "empty", in: "", reason: "expected 10 digits"},
		{name: "area code starts 1", in: "112-555-0123", reason: "not a valid NANP number"},
		{name: "area code starts 0", in: "012-555-0123", reason: "not a valid NANP number"},
		{name: "exchange starts 1", in: "212-155-0123", reason: "not a valid NANP number"},
		{name: "exchange starts 0", in: "212-055-0123", reason: "not a valid NANP number"},
		{name: "N9X area code is unassigned", in: "292-555-0123", reason: "not a valid NANP number"},
		{name: "999 area code", in: "999-555-0123", reason: "not a valid NANP number"},
	}
	t.Run("values", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "phone", format.Options{})
		runCases(t, f, f.Parse, values)
	})
	t.Run("values with distinguishable tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "phone", format.Options{Distinguishable: true})
		runCases(t, f, f.Parse, values)
	})
	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "phone", format.Options{})
		runCases(t, f, f.ParseToken, []tc{
			{name: "assigned area", in: "(212) 555-0123", core: "2125550123"},
			{name: "N9X area", in: "(292) 555-0123", reason: "not a token of this class"},
			{name: "exchange starts 1", in: "212-155-0123", reason: "not a token of this class"},
		})
	})
	t.Run("distinguishable tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "phone", format.Options{Distinguishable: true})
		runCases(t, f, f.ParseToken, []tc{
			{name: "N9X area", in: "(292) 555-0123", core: "2925550123"},
			{name: "999 area with country code", in: "+1 999 555 0123", core: "9995550123"},
			{name: "assigned area", in: "212-555-0123", reason: "not a token of this class"},
			{name: "19X area is not NANP", in: "192-555-0123", reason: "not a token of this class"},
			{name: "exchange starts 0", in: "292-055-0123", reason: "not a token of this class"},
		})
	})
}

func TestPhoneTokenKeepsPunctuation(t *testing.T) {
	t.Parallel()
	f := mustNew(t, "phone", format.Options{Distinguishable: true})
	tests := []struct{ name, value, want string }{
		{"parentheses", "(212) 555-0123", "(292) 876-5432"},
		{"country code", "+1 212 555 0123", "+1 292 876 5432"},
		{"bare", "2125550123", "2928765432"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := f.Parse(tt.value)
			require.NoError(t, err)
			token := []rune("2928765432")
			require.True(t, f.ValidToken(p.Template, token))
			assert.Equal(t, tt.want, p.Template.Render(token))
		})
	}
}

func TestEmail(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	cases := []tc{
		{name: "plain", in: "john.doe@example.com", core: "johndoe", norm: "john.doe@example.com"},
		{name: "mixed case folds to lower", in: "John.Doe+Tag@Example.COM", core: "johndoetag",
			norm: "john.doe+tag@example.com", render: "john.doe+tag@example.com"},
		{name: "kept punctuation", in: "a_b%c-d@x.org", core: "abcd", norm: "a_b%c-d@x.org"},
		{name: "shortest", in: "a@b.co", core: "a", norm: "a@b.co"},
		{name: "hyphenated domain", in: "x@my-host.example", core: "x", norm: "x@my-host.example"},
		{name: "local part of 64", in: long(64) + "@x.org", core: long(64), norm: long(64) + "@x.org"},
		{name: "label of 63", in: "a@" + long(63) + ".org", core: "a", norm: "a@" + long(63) + ".org"},
		{name: "empty", in: "", reason: "expected one @"},
		{name: "no local part", in: "@example.com", reason: "expected one @"},
		{name: "no @", in: "john.example.com", reason: "expected one @"},
		{name: "two @", in: "a@b@example.com", reason: "expected one @"},
		{name: "local part of 65", in: long(65) + "@x.org", reason: "local part at most 64"},
		{name: "domain of 254", in: "a@" + strings.Repeat(long(49)+".", 5) + "abcd", reason: "domain at most 253"},
		{name: "space in local part", in: "jo hn@example.com", reason: "local part may hold"},
		{name: "non-ASCII local part", in: "jöhn@example.com", reason: "local part may hold"},
		{name: "punctuation only", in: "...@example.com", reason: "needs a letter or digit"},
		{name: "single-label domain", in: "john@localhost", reason: "at least two labels"},
		{name: "empty domain", in: "john@", reason: "at least two labels"},
		{name: "empty label", in: "john@example..com", reason: "1 to 63"},
		{name: "trailing dot", in: "john@example.com.", reason: "1 to 63"},
		{name: "label of 64", in: "a@" + long(64) + ".org", reason: "1 to 63"},
		{name: "underscore in domain", in: "john@exa_mple.com", reason: "domain may hold"},
		{name: "non-ASCII domain", in: "john@exämple.com", reason: "domain may hold"},
	}
	f := mustNew(t, "email", format.Options{Distinguishable: true})
	assert.False(t, f.Distinguishable())
	runCases(t, f, f.Parse, cases)
	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		runCases(t, f, f.ParseToken, cases)
	})
}

func TestEmailTokenizeDomain(t *testing.T) {
	t.Parallel()
	f := mustNew(t, "email", format.Options{TokenizeDomain: true})
	runCases(t, f, f.Parse, []tc{
		{name: "every label but the last", in: "john@mail.example.com", core: "johnmailexample", norm: "john@mail.example.com"},
		{name: "hyphen kept", in: "j@my-host.org", core: "jmyhost", norm: "j@my-host.org"},
		{name: "case folds", in: "J@Example.ORG", core: "jexample", norm: "j@example.org", render: "j@example.org"},
		{name: "still checks the domain", in: "j@example", reason: "at least two labels"},
	})
	p, err := f.Parse("john@mail.example.com")
	require.NoError(t, err)
	assert.Equal(t, "wxyz@abcd.efghijk.com", p.Template.Render([]rune("wxyzabcdefghijk")), "the top-level label stays")
}

func TestName(t *testing.T) {
	t.Parallel()
	f := mustNew(t, "name", format.Options{})
	runCases(t, f, f.Parse, []tc{
		{name: "hyphen and apostrophe", in: "Mary-Jane O'Neil", core: "MaryJaneONeil", norm: "MARY-JANE O'NEIL"},
		{name: "title and suffix", in: "Dr. Smith, Jr.", core: "DrSmithJr", norm: "DR. SMITH, JR."},
		{name: "accented letters", in: "José Núñez", core: "JoséNúñez", norm: "JOSÉ NÚÑEZ"},
		{name: "other scripts", in: "Σωκράτης", core: "Σωκράτης", norm: "ΣΩΚΡΆΤΗΣ"},
		{name: "title-case letter takes an upper-case slot", in: "ǅemal", core: "ǅemal", norm: "ǄEMAL", render: "Ǆemal"},
		{name: "single letter", in: "A", core: "A", norm: "A"},
		{name: "empty", in: "", reason: "needs 1 to 256 letters"},
		{name: "punctuation only", in: " - ", reason: "needs 1 to 256 letters"},
		{name: "257 letters", in: strings.Repeat("a", 257), reason: "needs 1 to 256 letters"},
		{name: "digit", in: "R2D2", reason: "only letters"},
		{name: "underscore", in: "Smith_John", reason: "only letters"},
		{name: "tab", in: "Mary\tJane", reason: "only letters"},
		{name: "combining accent (NFD)", in: "Jose\u0301", reason: "only letters"},
	})
	t.Run("256 letters", func(t *testing.T) {
		t.Parallel()
		in := strings.Repeat("a", 256)
		runCases(t, f, f.Parse, []tc{{name: "max", in: in, core: in, norm: strings.ToUpper(in)}})
	})
	t.Run("tokens are ASCII letters", func(t *testing.T) {
		t.Parallel()
		runCases(t, f, f.ParseToken, []tc{
			{name: "ASCII", in: "Qwer Tyu-Iop", core: "QwerTyuIop", norm: "QWER TYU-IOP"},
			{name: "accented", in: "José", reason: "only letters"},
			{name: "Greek", in: "Σωκράτης", reason: "only letters"},
		})
	})
	t.Run("letters counted by MinLen and MaxLen", func(t *testing.T) {
		t.Parallel()
		g := mustNew(t, "name", format.Options{MinLen: 2, MaxLen: 5})
		runCases(t, g, g.Parse, []tc{
			{name: "min", in: "Al", core: "Al", norm: "AL"},
			{name: "punctuation not counted", in: "A-l", core: "Al", norm: "A-L"},
			{name: "max, multi-byte", in: "Ñúñez", core: "Ñúñez", norm: "ÑÚÑEZ"},
			{name: "below", in: "A.", reason: "needs 2 to 5 letters"},
			{name: "above", in: "Alexander", reason: "needs 2 to 5 letters"},
		})
	})
}

func TestNameTokenTakesTheValueCase(t *testing.T) {
	t.Parallel()
	f := mustNew(t, "name", format.Options{})
	tests := []struct{ name, value, core, want string }{
		{"capitalised", "José", "QWER", "Qwer"},
		{"inner capital", "McDonald", "abcdefgh", "AbCdefgh"},
		{"punctuation", "O'Neil-Ng", "qwertyu", "Q'Wert-Yu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := f.Parse(tt.value)
			require.NoError(t, err)
			assert.True(t, p.Template.Fits([]rune(tt.core)))
			assert.Equal(t, tt.want, p.Template.Render([]rune(tt.core)))
		})
	}
}

func TestRuns(t *testing.T) {
	t.Parallel()
	digits256 := strings.Repeat("7", 256)
	tests := []struct {
		name  string
		opts  format.Options
		cases []tc
	}{
		{"digits", format.Options{}, []tc{
			{name: "one", in: "0", core: "0"},
			{name: "leading zeros kept", in: "000123", core: "000123"},
			{name: "256", in: digits256, core: digits256},
			{name: "empty", in: "", reason: "length must be 1 to 256"},
			{name: "257", in: digits256 + "7", reason: "length must be 1 to 256"},
			{name: "letter at 3", in: "12a4", reason: "character 3 is not allowed"},
			{name: "dash", in: "1-2", reason: "character 2 is not allowed"},
			{name: "Arabic-Indic digit", in: "١٢٣", reason: "character 1 is not allowed"},
		}},
		{"alnum", format.Options{}, []tc{
			{name: "mixed case kept", in: "aB3zZ9", core: "aB3zZ9"},
			{name: "dash", in: "ab-c", reason: "character 3 is not allowed"},
			{name: "accented", in: "é", reason: "character 1 is not allowed"},
			{name: "space", in: "ab c", reason: "character 3 is not allowed"},
		}},
		{"digits", format.Options{MinLen: 4, MaxLen: 6}, []tc{
			{name: "min", in: "1234", core: "1234"},
			{name: "max", in: "123456", core: "123456"},
			{name: "short", in: "123", reason: "length must be 4 to 6"},
			{name: "long", in: "1234567", reason: "length must be 4 to 6"},
			{name: "length in characters, not bytes", in: "12é", reason: "length must be 4 to 6"},
			{name: "multi-byte within bounds", in: "12éé", reason: "character 3 is not allowed"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := mustNew(t, tt.name, tt.opts)
			assert.Equal(t, -1, f.CheckPosition(4, nil))
			runCases(t, f, f.Parse, tt.cases)
			runCases(t, f, f.ParseToken, tt.cases)
		})
	}
}

func TestDate(t *testing.T) {
	t.Parallel()
	values := []tc{
		{name: "leap day", in: "2024-02-29", core: "20240229"},
		{name: "leap century", in: "2000-02-29", core: "20000229"},
		{name: "first day", in: "0001-01-01", core: "00010101"},
		{name: "last day before 2200", in: "2199-12-31", core: "21991231"},
		{name: "not a leap year", in: "2023-02-29", reason: "not a calendar date"},
		{name: "1900 is not a leap year", in: "1900-02-29", reason: "not a calendar date"},
		{name: "month 13", in: "2024-13-01", reason: "not a calendar date"},
		{name: "month 00", in: "2024-00-10", reason: "not a calendar date"},
		{name: "day 00", in: "2024-01-00", reason: "not a calendar date"},
		{name: "April 31", in: "2024-04-31", reason: "not a calendar date"},
		{name: "year 0000", in: "0000-01-01", reason: "not a calendar date"},
		{name: "one-digit month", in: "2024-1-01", reason: "expected YYYY-MM-DD"},
		{name: "no dashes", in: "20240101", reason: "expected YYYY-MM-DD"},
		{name: "slashes", in: "2024/01/01", reason: "expected YYYY-MM-DD"},
		{name: "with time", in: "2024-01-01T00:00:00Z", reason: "expected YYYY-MM-DD"},
		{name: "US order", in: "01-31-2024", reason: "expected YYYY-MM-DD"},
		{name: "full-width digits", in: "２０２４-01-01", reason: "expected YYYY-MM-DD"},
		{name: "empty", in: "", reason: "expected YYYY-MM-DD"},
	}
	t.Run("values", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "date", format.Options{})
		runCases(t, f, f.Parse, append(values,
			tc{name: "2200 is a value without distinguishable tokens", in: "2200-01-01", core: "22000101"},
			tc{name: "last day", in: "9999-12-31", core: "99991231"}))
	})
	t.Run("values with distinguishable tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "date", format.Options{Distinguishable: true})
		runCases(t, f, f.Parse, append(values,
			tc{name: "2200 is reserved for tokens", in: "2200-01-01", reason: "dates from 2200 on are reserved"},
			tc{name: "9999 is reserved for tokens", in: "9999-12-31", reason: "dates from 2200 on are reserved"}))
	})
	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "date", format.Options{})
		runCases(t, f, f.ParseToken, []tc{
			{name: "past", in: "1999-01-01", core: "19990101"},
			{name: "far future", in: "2300-01-01", core: "23000101"},
			{name: "not a date", in: "2300-02-30", reason: "not a calendar date"},
		})
	})
	t.Run("distinguishable tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "date", format.Options{Distinguishable: true})
		runCases(t, f, f.ParseToken, []tc{
			{name: "first token day", in: "2200-01-01", core: "22000101"},
			{name: "last day", in: "9999-12-31", core: "99991231"},
			{name: "leap day 2204", in: "2204-02-29", core: "22040229"},
			{name: "before 2200", in: "2199-12-31", reason: "not a token of this class"},
			{name: "2200 is not a leap year", in: "2200-02-29", reason: "not a calendar date"},
			{name: "shape", in: "2200-1-01", reason: "expected YYYY-MM-DD"},
		})
	})
}

func TestNPI(t *testing.T) {
	t.Parallel()
	// Check digits computed with luhnOK over 80840 ‖ NPI (CMS's NPI check digit rule).
	require.True(t, luhnOK("80840"+"1234567893"), "the CMS example NPI")
	require.True(t, luhnOK("80840"+"3123456782"))
	require.True(t, luhnOK("80840"+"0123456788"))
	require.False(t, luhnOK("1234567893"), "the NPI alone does not pass: the 80840 prefix matters")
	values := []tc{
		{name: "CMS example", in: "1234567893", core: "1234567893"},
		{name: "starts 2", in: "2234567891", core: "2234567891"},
		{name: "wrong check digit", in: "1234567890", reason: "check digit does not match"},
		{name: "Luhn without the prefix", in: "1234567897", reason: "check digit does not match"},
		{name: "starts 3", in: "3123456782", reason: "issued NPIs start with 1 or 2"},
		{name: "starts 0", in: "0123456788", reason: "issued NPIs start with 1 or 2"},
		{name: "9 digits", in: "123456789", reason: "expected 10 digits"},
		{name: "11 digits", in: "12345678931", reason: "expected 10 digits"},
		{name: "dashes", in: "123-456-7893", reason: "expected 10 digits"},
		{name: "empty", in: "", reason: "expected 10 digits"},
	}
	require.True(t, luhnOK("1234567897"))
	t.Run("values", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "npi", format.Options{})
		runCases(t, f, f.Parse, values)
	})
	t.Run("values with distinguishable tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "npi", format.Options{Distinguishable: true})
		runCases(t, f, f.Parse, values)
	})
	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "npi", format.Options{})
		runCases(t, f, f.ParseToken, []tc{
			{name: "issued prefix", in: "1234567893", core: "1234567893"},
			{name: "starts 3", in: "3123456782", reason: "not a token of this class"},
			{name: "check digit", in: "1234567894", reason: "check digit does not match"},
		})
	})
	t.Run("distinguishable tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "npi", format.Options{Distinguishable: true})
		runCases(t, f, f.ParseToken, []tc{
			{name: "starts 3", in: "3123456782", core: "3123456782"},
			{name: "starts 9", in: "9000000007", core: "9000000007"},
			{name: "starts 0: never issued either", in: "0123456788", core: "0123456788"},
			{name: "starts 1", in: "1234567893", reason: "not a token of this class"},
			{name: "starts 2", in: "2234567891", reason: "not a token of this class"},
			{name: "fails the check", in: "3123456783", reason: "check digit does not match"},
		})
	})
}

func TestCard(t *testing.T) {
	t.Parallel()
	values := []tc{
		{name: "Visa test number", in: "4111111111111111", core: "4111111111111111"},
		{name: "spaces kept", in: "4111 1111 1111 1111", core: "4111111111111111"},
		{name: "dashes kept", in: "5555-5555-5555-4444", core: "5555555555554444"},
		{name: "15-digit Amex", in: "3782 822463 10005", core: "378282246310005"},
		{name: "13 digits", in: "4222222222222", core: "4222222222222"},
		{name: "19 digits", in: "4000000000000000006", core: "4000000000000000006"},
		{name: "wrong check digit", in: "4111111111111112", reason: "check digit does not match"},
		{name: "12 digits", in: "411111111119", reason: "expected 13 to 19 digits"},
		{name: "20 digits", in: "40000000000000000006", reason: "expected 13 to 19 digits"},
		{name: "separators only", in: "---- ----", reason: "expected 13 to 19 digits"},
		{name: "empty", in: "", reason: "expected 13 to 19 digits"},
		{name: "dots", in: "4111.1111.1111.1111", reason: "only digits, spaces and dashes"},
		{name: "letter", in: "4111 1111 1111 111O", reason: "only digits, spaces and dashes"},
	}
	for _, c := range values {
		if c.reason == "" {
			require.True(t, luhnOK(c.core), c.name)
		}
	}
	t.Run("values", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "credit_card", format.Options{})
		runCases(t, f, f.Parse, values)
		runCases(t, f, f.ParseToken, values[:6])
	})
	t.Run("values with distinguishable tokens", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "credit_card", format.Options{Distinguishable: true})
		runCases(t, f, f.Parse, values)
	})
	t.Run("distinguishable tokens fail the Luhn check", func(t *testing.T) {
		t.Parallel()
		f := mustNew(t, "credit_card", format.Options{Distinguishable: true})
		runCases(t, f, f.ParseToken, []tc{
			{name: "Luhn-invalid", in: "4111 1111 1111 1112", core: "4111111111111112"},
			{name: "Luhn-valid", in: "4111 1111 1111 1111", reason: "not a token of this class"},
			{name: "length still checked", in: "411111111112", reason: "expected 13 to 19 digits"},
		})
	})
}

// TestCheckDigitCompletion covers the derived position of NPI and card tokens: the last
// position not kept in clear, set so the token passes (or, for distinguishable cards,
// fails) the Luhn check.
func TestCheckDigitCompletion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		format string
		d      bool
		core   string // with ? at the derived position
		fixed  []bool
		pos    int
		want   string
	}{
		{"npi last", "npi", false, "123456789?", nil, 9, "1234567893"},
		{"npi last kept in clear", "npi", false, "12345678?3", lastFixed(10, 1), 8, "1234567893"},
		{"npi distinguishable", "npi", true, "312345678?", nil, 9, "3123456782"},
		{"card last", "credit_card", false, "411111111111111?", nil, 15, "4111111111111111"},
		{"card last four kept", "credit_card", false, "41111111111?1111", lastFixed(16, 4), 11, "4111111111111111"},
		{"card distinguishable fails Luhn", "credit_card", true, "411111111111111?", nil, 15, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := mustNew(t, tt.format, format.Options{Distinguishable: tt.d})
			core := []rune(tt.core)
			pos := f.CheckPosition(len(core), tt.fixed)
			require.Equal(t, tt.pos, pos)
			f.Complete(core, pos)
			assert.NotEqual(t, '?', core[pos])
			all := string(core)
			if tt.want != "" {
				assert.Equal(t, tt.want, all)
			}
			prefix := ""
			if tt.format == "npi" {
				prefix = "80840"
			}
			assert.Equal(t, !tt.d || tt.format == "npi", luhnOK(prefix+all))
		})
	}
	t.Run("everything kept in clear", func(t *testing.T) {
		t.Parallel()
		for _, name := range []string{"npi", "credit_card"} {
			f := mustNew(t, name, format.Options{})
			assert.Equal(t, -1, f.CheckPosition(3, []bool{true, true, true}), name)
		}
	})
}

func lastFixed(n, k int) []bool {
	fixed := make([]bool, n)
	for i := n - k; i < n; i++ {
		fixed[i] = true
	}
	return fixed
}

// TestValidTokenDistinguishes checks ValidToken itself, the engine's gate, for each
// format that can set its tokens apart: a value's own core is never a valid
// distinguishable token.
func TestValidTokenDistinguishes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format string
		value  string
		token  string // a core that is a distinguishable token
	}{
		{"ssn", "123-45-6789", "987654321"},
		{"phone", "212-555-0123", "2928765432"},
		{"date", "1980-06-15", "23010228"},
		{"npi", "1234567893", "3123456782"},
		{"credit_card", "4111111111111111", "4111111111111112"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			t.Parallel()
			plain := mustNew(t, tt.format, format.Options{})
			d := mustNew(t, tt.format, format.Options{Distinguishable: true})
			p, err := d.Parse(tt.value)
			require.NoError(t, err)
			assert.False(t, d.ValidToken(p.Template, p.Core), "a value is not a distinguishable token")
			assert.True(t, plain.ValidToken(p.Template, p.Core), "a value's shape is a plain token")
			token := []rune(tt.token)
			assert.True(t, d.ValidToken(p.Template, token))
			_, err = d.Parse(p.Template.Render(token))
			assert.Error(t, err, "a distinguishable token is never a valid value")
			if tt.format != "date" { // every date is a plain date token
				assert.False(t, plain.ValidToken(p.Template, token), "a distinguishable token is no plain token")
			}
		})
	}
}
