package bulk_test

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// devClasses are the classes of the development configuration, with a value generator.
var devClasses = []struct {
	class string
	gen   func(r *rand.Rand) string
}{
	{"ssn", ssn},
	{"phone", func(r *rand.Rand) string {
		return fmt.Sprintf("(%d%d%d) %d%02d-%04d", 2+r.IntN(7), r.IntN(9), 2+r.IntN(8), 2+r.IntN(8), r.IntN(100), r.IntN(10000))
	}},
	{"email", func(r *rand.Rand) string { return fmt.Sprintf("pat.%s@example.org", word(r, 6)) }},
	{"name", name},
	{"date", func(r *rand.Rand) string {
		return fmt.Sprintf("%d-%02d-%02d", 1930+r.IntN(90), 1+r.IntN(12), 1+r.IntN(28))
	}},
	{"npi", func(r *rand.Rand) string { return []string{"1234567893", "1245319599", "1003000126"}[r.IntN(3)] }},
	{"credit_card", func(r *rand.Rand) string {
		return []string{"4111 1111 1111 1111", "5500005555555559", "4012888888881881"}[r.IntN(3)]
	}},
	{"mrn", func(r *rand.Rand) string { return fmt.Sprintf("MRN-%08d", r.IntN(100000000)) }},
	{"ssn_fpe", ssn},
	{"ssn_dynamic", ssn},
}

func ssn(r *rand.Rand) string {
	return fmt.Sprintf("%03d-%02d-%04d", 1+r.IntN(665), 1+r.IntN(99), 1+r.IntN(9999))
}

func word(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

// name makes names with Unicode letters, commas and apostrophes.
func name(r *rand.Rand) string {
	first := []string{"Zoë", "José", "Łukasz", "Anne-Marie", "Jo", "Ngozi"}[r.IntN(6)]
	last := []string{"O'Brien", "Núñez", "Smith", "van Dijk", "Kowalczyk"}[r.IntN(5)]
	if r.IntN(2) == 0 {
		return last + ", " + first
	}
	return first + " " + last
}

// csvCell quotes a value as a careful writer would, or sometimes even when not needed.
func csvCell(v string, delim byte, r *rand.Rand) string {
	if strings.ContainsAny(v, string([]byte{delim, '"', '\r', '\n'})) || r.IntN(4) == 0 {
		return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
	}
	return v
}

// delimitedFile makes a header and rows with every dev class, a free-text column with
// delimiters, quotes and line breaks, and empty cells; CRLF line ends and a BOM.
func delimitedFile(rows int, delim byte, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	b.Write([]byte{0xEF, 0xBB, 0xBF})
	cols := []string{"id"}
	for _, c := range devClasses {
		cols = append(cols, c.class)
	}
	cols = append(cols, "note")
	b.WriteString(strings.Join(cols, string(delim)) + "\r\n")
	notes := []string{"", "plain", "has, comma\tand tab", "line one\r\nline \"two\"", "ünïcödé ✓"}
	for i := range rows {
		cells := []string{fmt.Sprint(i + 1)}
		for _, c := range devClasses {
			v := c.gen(r)
			if r.IntN(8) == 0 {
				v = "" // empty stays empty
			}
			cells = append(cells, csvCell(v, delim, r))
		}
		cells = append(cells, csvCell(notes[r.IntN(len(notes))], delim, r))
		b.WriteString(strings.Join(cells, string(delim)) + "\r\n")
	}
	return b.Bytes()
}

// delimitedRows parses a generated file (BOM, CRLF, quoted cells) into rows of cells.
func delimitedRows(t *testing.T, b []byte, delim byte) [][]string {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte{0xEF, 0xBB, 0xBF})))
	r.Comma = rune(delim)
	rows, err := r.ReadAll()
	require.NoError(t, err)
	return rows
}

func columnFlags() []string {
	var args []string
	for _, c := range devClasses {
		args = append(args, "--column", c.class+"="+c.class)
	}
	return args
}

func decompress(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	switch {
	case strings.HasSuffix(path, ".gz"):
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		require.NoError(t, err)
		out, err := io.ReadAll(zr)
		require.NoError(t, err)
		return out
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(bytes.NewReader(raw))
		require.NoError(t, err)
		defer zr.Close()
		out, err := io.ReadAll(zr)
		require.NoError(t, err)
		return out
	}
	return raw
}

func compressTo(t *testing.T, path string, data []byte) {
	t.Helper()
	var b bytes.Buffer
	switch {
	case strings.HasSuffix(path, ".gz"):
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(data)
		require.NoError(t, zw.Close())
	case strings.HasSuffix(path, ".zst"):
		zw, err := zstd.NewWriter(&b)
		require.NoError(t, err)
		_, _ = zw.Write(data)
		require.NoError(t, zw.Close())
	default:
		b.Write(data)
	}
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o600))
}

// TestRoundTripDelimited tokenizes and detokenizes CSV and TSV files (plain, gzip,
// zstd) with every dev class and gets the input back byte for byte.
func TestRoundTripDelimited(t *testing.T) {
	s := startService(t)
	for _, tt := range []struct {
		name  string
		delim byte
		in    string
	}{
		{"csv", ',', "in.csv"},
		{"tsv gzip", '\t', "in.tsv.gz"},
		{"csv zstd", ',', "in.csv.zst"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := delimitedFile(700, tt.delim, uint64(tt.delim))
			in := filepath.Join(dir, tt.in)
			compressTo(t, in, data)
			tok := filepath.Join(dir, "tok-"+tt.in)
			back := filepath.Join(dir, "back-"+tt.in)
			res := s.client(t, append([]string{"tokenize-file", "--input", in, "--output", tok, "--batch", "250", "--progress", "none"}, columnFlags()...)...)
			require.Equal(t, 0, res.code, res.stderr)
			tokenized := decompress(t, tok)
			assert.NotEqual(t, data, tokenized)
			assert.Equal(t, bytes.Count(data, []byte("\r\n")), bytes.Count(tokenized, []byte("\r\n")), "record and line structure kept")
			// No MRN survives tokenization in its row (a random MRN token may well start
			// with MRN-0000, so the check is by row, not by substring).
			origRows, tokRows := delimitedRows(t, data, tt.delim), delimitedRows(t, tokenized, tt.delim)
			require.Equal(t, len(origRows), len(tokRows))
			mrn := slices.Index(origRows[0], "mrn")
			for i := 1; i < len(origRows); i++ {
				if origRows[i][mrn] != "" {
					assert.NotEqual(t, origRows[i][mrn], tokRows[i][mrn], "row %d", i)
				}
			}
			res = s.client(t, append([]string{"detokenize-file", "--input", tok, "--output", back, "--purpose", "TREAT", "--progress", "none"}, columnFlags()...)...)
			require.Equal(t, 0, res.code, res.stderr)
			assert.True(t, bytes.Equal(data, decompress(t, back)), "the round trip gives the input back byte for byte")
			assert.Contains(t, res.stderr, "summary: rows=700 written=700 rejects=0")
		})
	}
}

// ndjsonFile makes lines with nested objects, arrays of objects and arrays of strings,
// nulls, empty strings, escapes and Unicode.
func ndjsonFile(rows int) []byte {
	r := rand.New(rand.NewPCG(7, 7))
	var b bytes.Buffer
	for i := range rows {
		ssnV := fmt.Sprintf("%q", ssn(r))
		if i%5 == 0 {
			ssnV = "null"
		}
		if i%7 == 0 {
			ssnV = `""`
		}
		fmt.Fprintf(&b, `{"id":%d,"patient":{"ssn":%s,"names":[{"given":["%s","%s"],"family":"%s"}],"note":"tab\there \"quoted\" \u00e9"},"mrns":["%s", "%s"],"n":1.5e3,"ok":true}`+"\n",
			i, ssnV, word(r, 7), word(r, 8), "Núñez", fmt.Sprintf("MRN-%08d", r.IntN(1e8)), fmt.Sprintf("MRN-%08d", r.IntN(1e8)))
	}
	return b.Bytes()
}

// TestRoundTripNDJSON reaches values by JSON pointer and dotted paths through nested
// arrays; nulls stay null, empty strings stay empty, other bytes stay as they were.
func TestRoundTripNDJSON(t *testing.T) {
	s := startService(t)
	dir := t.TempDir()
	data := ndjsonFile(500)
	in := filepath.Join(dir, "in.ndjson.zst")
	compressTo(t, in, data)
	tok, back := filepath.Join(dir, "tok.ndjson"), filepath.Join(dir, "back.jsonl.gz")
	cols := []string{"--column", "/patient/ssn=ssn", "--column", "patient.names[*].given[*]=name",
		"--column", "patient.names[*].family=name", "--column", "/mrns/*=mrn"}
	res := s.client(t, append([]string{"tokenize-file", "--input", in, "--output", tok, "--progress", "none"}, cols...)...)
	require.Equal(t, 0, res.code, res.stderr)
	tokenized := decompress(t, tok)
	lines := strings.Split(strings.TrimSpace(string(tokenized)), "\n")
	require.Len(t, lines, 500)
	assert.Contains(t, lines[0], `"ssn":""`, "empty stays empty")
	assert.Contains(t, lines[5], `"ssn":null`, "null stays null")
	assert.NotContains(t, string(tokenized), "Núñez")
	assert.Contains(t, lines[1], `"note":"tab\there \"quoted\" \u00e9"`, "unmapped bytes kept")
	res = s.client(t, append([]string{"detokenize-file", "--input", tok, "--output", back, "--format", "ndjson", "--purpose", "TREAT", "--progress", "none"}, cols...)...)
	require.Equal(t, 0, res.code, res.stderr)
	got := decompress(t, back)
	if !bytes.Equal(data, got) {
		dl, gl := strings.Split(string(data), "\n"), strings.Split(string(got), "\n")
		for i := range min(len(dl), len(gl)) {
			if dl[i] != gl[i] {
				t.Logf("line %d differs:\n%s\n%s", i+1, dl[i], gl[i])
				break
			}
		}
	}
	assert.True(t, bytes.Equal(data, got), "the round trip gives the input back byte for byte")
}
