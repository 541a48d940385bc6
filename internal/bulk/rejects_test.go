package bulk_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const badCSV = "id,ssn,mrn\n" +
	"1,123-45-6789,MRN-00000001\n" +
	"2,12-345-678,MRN-00000002\n" + // SSN does not fit
	"3,234-56-7890,MRN-0000000X\n" + // MRN does not fit
	"4,345-67-8901,MRN-00000004\n" +
	"5,not an ssn,MRN-00000005\n" +
	"6,456-78-9012,MRN-00000006\n"

// TestRejects writes each bad record to the reject file with its record number, column
// and reason (never the value), keeps going, and exits non-zero; --max-rejects stops.
func TestRejects(t *testing.T) {
	s := startService(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	require.NoError(t, os.WriteFile(in, []byte(badCSV), 0o600))
	out := filepath.Join(dir, "out.csv")
	res := s.client(t, "tokenize-file", "--input", in, "--output", out, "--column", "ssn=ssn", "--column", "mrn=mrn", "--batch", "2", "--progress", "none")
	assert.Equal(t, 3, res.code, res.stderr)
	assert.Contains(t, res.stderr, "summary: rows=6 written=3 rejects=3")
	assert.Contains(t, res.stderr, "3 records rejected")
	rej, err := os.ReadFile(out + ".rejects.csv")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(rej)), "\n")
	require.Len(t, lines, 4, string(rej))
	assert.Equal(t, "record,column,reason", lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "2,ssn,"), lines[1])
	assert.True(t, strings.HasPrefix(lines[2], "3,mrn,"), lines[2])
	assert.True(t, strings.HasPrefix(lines[3], "5,ssn,"), lines[3])
	for _, v := range []string{"12-345-678", "MRN-0000000X", "not an ssn"} {
		assert.NotContains(t, string(rej), v, "the reject file never holds the value")
		assert.NotContains(t, res.stderr, v)
	}
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	outLines := strings.Split(strings.TrimSpace(string(got)), "\n")
	require.Len(t, outLines, 4, "header and the three good records")
	for i, id := range []string{"1", "4", "6"} {
		assert.True(t, strings.HasPrefix(outLines[i+1], id+",9"), outLines[i+1])
	}

	// --max-rejects 1: the second reject stops the job.
	res = s.client(t, "tokenize-file", "--input", in, "--output", out, "--column", "ssn=ssn", "--column", "mrn=mrn", "--batch", "2", "--max-rejects", "1", "--progress", "none")
	assert.Equal(t, 4, res.code, res.stderr)
	assert.Contains(t, res.stderr, "more rejects than --max-rejects allows")
	// --max-rejects 3 allows all three: the job finishes, still non-zero.
	res = s.client(t, "tokenize-file", "--input", in, "--output", out, "--column", "ssn=ssn", "--column", "mrn=mrn", "--max-rejects", "3", "--progress", "none")
	assert.Equal(t, 3, res.code, res.stderr)

	// A job-level problem is no reject: an unknown class fails the job at once.
	res = s.client(t, "tokenize-file", "--input", in, "--output", out, "--column", "ssn=no_such_class", "--progress", "none")
	assert.Equal(t, 1, res.code, res.stderr)
	assert.Contains(t, res.stderr, "unknown class")
	// A column missing from the header is a usage error found before any request.
	res = s.client(t, "tokenize-file", "--input", in, "--output", out, "--column", "nope=ssn", "--progress", "none")
	assert.Equal(t, 1, res.code, res.stderr)
	assert.Contains(t, res.stderr, `column "nope": not in the header row`)
	// Detokenize without a purpose is refused before it starts.
	res = s.client(t, "detokenize-file", "--input", out, "--output", out+".back", "--column", "ssn=ssn", "--progress", "none")
	assert.Equal(t, 1, res.code, res.stderr)
	assert.Contains(t, res.stderr, "purpose: required")
}
