package bulk

import (
	"bufio"
	"fmt"
	"path/filepath"
	"strings"
)

// Field is one mapped value inside a raw record: its byte span, the column or path it
// came from, the class it maps to, and its decoded value.
type Field struct {
	Start, End int
	Column     string
	Class      string
	Value      string
	// Quoted records how the value was written (CSV), so the result is written alike.
	Quoted bool
}

// RowError is a problem with one record (a reject), never with the job as a whole.
type RowError struct {
	Column string
	Reason string
}

func (e *RowError) Error() string { return e.Column + ": " + e.Reason }

// Format reads and rewrites one record format. Implementations keep every byte of a
// record except the mapped values, so that a round trip gives the input back.
type Format interface {
	// Header consumes the format's header, if any, and returns its raw bytes.
	Header(r *bufio.Reader) ([]byte, error)
	// ReadRecord returns the raw bytes of the next record with its terminator, or io.EOF.
	ReadRecord(r *bufio.Reader) ([]byte, error)
	// Fields locates the mapped, non-empty, non-null values of a record. A *RowError
	// makes the record a reject.
	Fields(raw []byte) ([]Field, error)
	// Encode appends value, written as field f was written, to dst.
	Encode(dst []byte, f Field, value string) []byte
}

// formats builds a Format by name for a job (Parquet is read by row group instead, see
// parquet.go).
var formats = map[string]func(j *Job) (Format, error){
	"csv":            func(j *Job) (Format, error) { return newCSV(j, ',') },
	"tsv":            func(j *Job) (Format, error) { return newCSV(j, '\t') },
	"ndjson":         newNDJSON,
	FormatFHIRNDJSON: newFHIRNDJSON,
}

// FormatNames lists the supported formats.
func FormatNames() []string { return []string{"csv", "tsv", "ndjson", "parquet", FormatFHIRNDJSON} }

// formatFromName guesses the format from a file name (after any compression suffix).
func formatFromName(name string) string {
	base := strings.ToLower(name)
	for _, ext := range []string{".gz", ".zst", ".zstd"} {
		base = strings.TrimSuffix(base, ext)
	}
	switch filepath.Ext(base) {
	case ".csv":
		return "csv"
	case ".tsv", ".tab":
		return "tsv"
	case ".ndjson", ".jsonl":
		return "ndjson"
	case ".parquet":
		return "parquet"
	}
	return ""
}

func newFormat(j *Job) (Format, error) {
	mk, ok := formats[j.Format]
	if !ok {
		return nil, fmt.Errorf("format %q: want one of %s", j.Format, strings.Join(FormatNames(), ", "))
	}
	return mk(j)
}
