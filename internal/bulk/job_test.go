package bulk

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadJobFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
operation: detokenize
input: in.csv.gz
output: out.csv
purpose: HOPERAT
max_rejects: 0
concurrency: 2
columns:
  - {field: ssn, class: ssn}
  - {field: "patient.names[*].given[*]", class: name}
`), 0o600))

	j := &Job{Operation: Detokenize, Output: "flag.csv", MaxRejects: -1}
	require.NoError(t, LoadJobFile(path, j))
	assert.Equal(t, "in.csv.gz", j.Input)
	assert.Equal(t, "flag.csv", j.Output, "flags win over the file")
	assert.Equal(t, "HOPERAT", j.Purpose)
	assert.Equal(t, 0, j.MaxRejects, "max_rejects: 0 stops at the first reject")
	assert.Equal(t, 2, j.Concurrency)
	assert.Equal(t, []Mapping{{"ssn", "ssn"}, {"patient.names[*].given[*]", "name"}}, j.Columns)
	require.NoError(t, j.complete())
	assert.Equal(t, "csv", j.Format, "from the input name, past .gz")
	assert.Equal(t, "flag.csv.rejects.csv", j.RejectFile)
	assert.Equal(t, "flag.csv.checkpoint", j.Checkpoint)
	assert.Equal(t, 1000, j.BatchItems)

	err := LoadJobFile(path, &Job{Operation: Tokenize, MaxRejects: -1})
	assert.ErrorContains(t, err, `operation "detokenize" does not match the command (tokenize)`)

	require.NoError(t, os.WriteFile(path, []byte("colums: []\n"), 0o600))
	assert.ErrorContains(t, LoadJobFile(path, &Job{Operation: Tokenize}), "field colums not found")

	for _, tt := range []struct {
		name string
		job  Job
		want string
	}{
		{"no columns", Job{Operation: Tokenize, Input: "a.csv"}, "no columns mapped"},
		{"no purpose", Job{Operation: Detokenize, Input: "a.csv", Columns: []Mapping{{"a", "b"}}}, "purpose: required"},
		{"unknown format", Job{Operation: Tokenize, Input: "a.xml", Columns: []Mapping{{"a", "b"}}}, "cannot tell from the file names"},
		{"resume to stdout", Job{Operation: Tokenize, Input: "a.csv", Resume: true, Columns: []Mapping{{"a", "b"}}}, "resume: needs an output file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorContains(t, tt.job.complete(), tt.want)
		})
	}
	_, err = ParseMapping("ssn")
	assert.ErrorContains(t, err, "want column=class")
}
