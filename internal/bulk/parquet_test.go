package bulk_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type pqName struct {
	Given  []string `parquet:"given"`
	Family string   `parquet:"family"`
}

type pqPatient struct {
	ID    int64   `parquet:"id"`
	SSN   *string `parquet:"ssn,optional"`
	MRN   string  `parquet:"mrn"`
	Name  pqName  `parquet:"name"`
	Note  string  `parquet:"note"`
	Score float64 `parquet:"score"`
}

func pqPatients(n int) []pqPatient {
	r := rand.New(rand.NewPCG(3, 5))
	out := make([]pqPatient, n)
	for i := range out {
		p := pqPatient{ID: int64(i), MRN: fmt.Sprintf("MRN-%08d", r.IntN(1e8)), Note: "ünïcödé, \"quoted\"\nline", Score: r.Float64()}
		switch i % 4 {
		case 0: // null stays null
		case 1:
			s := "" // empty stays empty
			p.SSN = &s
		default:
			s := ssn(r)
			p.SSN = &s
		}
		p.Name = pqName{Given: []string{"Zoë" + word(r, 6), "José" + word(r, 5)}[:1+i%2], Family: "Núñez" + word(r, 6)}
		out[i] = p
	}
	return out
}

// TestRoundTripParquet tokenizes nested, repeated and optional string columns of a
// zstd Parquet file with several row groups, and detokenizes them back value for value;
// the output keeps the schema, the codec and the row groups.
func TestRoundTripParquet(t *testing.T) {
	s := startService(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.parquet")
	rows := pqPatients(900)
	f, err := os.Create(in)
	require.NoError(t, err)
	w := parquet.NewGenericWriter[pqPatient](f, parquet.Compression(&parquet.Zstd), parquet.KeyValueMetadata("origin", "test"))
	for lo := 0; lo < len(rows); lo += 300 {
		_, err := w.Write(rows[lo : lo+300])
		require.NoError(t, err)
		require.NoError(t, w.Flush())
	}
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())

	cols := []string{"--column", "ssn=ssn", "--column", "mrn=mrn", "--column", "name.given=name", "--column", "/name/family=name", "--progress", "none"}
	tok, back := filepath.Join(dir, "tok.parquet"), filepath.Join(dir, "back.parquet")
	res := s.client(t, append([]string{"tokenize-file", "--input", in, "--output", tok, "--batch", "200"}, cols...)...)
	require.Equal(t, 0, res.code, res.stderr)
	tokRows, err := parquet.ReadFile[pqPatient](tok)
	require.NoError(t, err)
	require.Len(t, tokRows, len(rows))
	for i, p := range tokRows {
		assert.Equal(t, rows[i].ID, p.ID)
		assert.Equal(t, rows[i].Note, p.Note, "unmapped columns unchanged")
		assert.NotEqual(t, rows[i].MRN, p.MRN)
		assert.NotEqual(t, rows[i].Name.Family, p.Name.Family)
		assert.Len(t, p.Name.Given, len(rows[i].Name.Given))
		if rows[i].SSN == nil {
			assert.Nil(t, p.SSN, "null stays null")
		} else if *rows[i].SSN == "" {
			assert.Equal(t, "", *p.SSN, "empty stays empty")
		} else {
			assert.Regexp(t, `^9\d\d-\d\d-\d{4}$`, *p.SSN)
		}
	}
	res = s.client(t, append([]string{"detokenize-file", "--input", tok, "--output", back, "--purpose", "TREAT"}, cols...)...)
	require.Equal(t, 0, res.code, res.stderr)
	backRows, err := parquet.ReadFile[pqPatient](back)
	require.NoError(t, err)
	assert.Equal(t, rows, backRows, "value for value")

	inF, outF := openPQ(t, in), openPQ(t, back)
	assert.Equal(t, inF.Schema().String(), outF.Schema().String(), "the input's schema")
	assert.Len(t, outF.RowGroups(), 3, "one row group per input row group")
	assert.Equal(t, inF.Metadata().RowGroups[0].Columns[0].MetaData.Codec, outF.Metadata().RowGroups[0].Columns[0].MetaData.Codec, "the input's codec")
	v, ok := outF.Lookup("origin")
	assert.True(t, ok)
	assert.Equal(t, "test", v)
	_, err = os.Stat(back + ".parts")
	assert.ErrorIs(t, err, os.ErrNotExist, "part files removed")
}

func openPQ(t *testing.T, path string) *parquet.File {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	require.NoError(t, err)
	pf, err := parquet.OpenFile(f, st.Size())
	require.NoError(t, err)
	return pf
}

// TestParquetResume kills a Parquet job after some row groups and resumes it: the
// output equals an uninterrupted run's byte for byte.
func TestParquetResume(t *testing.T) {
	s := startService(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.parquet")
	rows := pqPatients(6000)
	f, err := os.Create(in)
	require.NoError(t, err)
	w := parquet.NewGenericWriter[pqPatient](f, parquet.Compression(&parquet.Snappy))
	for lo := 0; lo < len(rows); lo += 300 {
		_, err := w.Write(rows[lo : lo+300])
		require.NoError(t, err)
		require.NoError(t, w.Flush())
	}
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	args := []string{"--column", "ssn=ssn", "--column", "mrn=mrn", "--column", "name.family=name", "--batch", "100", "--progress", "none"}
	whole := filepath.Join(dir, "whole.parquet")
	res := s.client(t, append([]string{"tokenize-file", "--input", in, "--output", whole}, args...)...)
	require.Equal(t, 0, res.code, res.stderr)

	out := filepath.Join(dir, "killed.parquet")
	cmd := exec.Command(binary, append([]string{"tokenize-file", "--input", in, "--output", out, "--insecure", "--grpc", s.grpc}, args...)...)
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { _, err := os.Stat(out + ".checkpoint"); return err == nil }, 60*time.Second, 2*time.Millisecond)
	time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	raw, err := os.ReadFile(out + ".checkpoint")
	require.NoError(t, err, "killed before the end")
	var ck struct {
		RowGroups int `json:"row_groups"`
	}
	require.NoError(t, json.Unmarshal(raw, &ck))
	t.Logf("killed after %d of 20 row groups", ck.RowGroups)
	require.True(t, ck.RowGroups > 0 && ck.RowGroups < 20)

	res = s.client(t, append([]string{"tokenize-file", "--input", in, "--output", out, "--resume"}, args...)...)
	require.Equal(t, 0, res.code, res.stderr)
	a, err := os.ReadFile(whole)
	require.NoError(t, err)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(a, b), "resumed Parquet output is byte-identical")
}
