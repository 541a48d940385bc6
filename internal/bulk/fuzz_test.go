package bulk

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// splice rewrites raw with each field re-encoded from its own decoded value: a reader
// and writer that agree give raw back.
func splice(f Format, raw []byte, fields []Field) []byte {
	var out []byte
	prev := 0
	for _, fl := range fields {
		out = append(out, raw[prev:fl.Start]...)
		out = f.Encode(out, fl, fl.Value)
		prev = fl.End
	}
	return append(out, raw[prev:]...)
}

func checkRecords(t *testing.T, f Format, data []byte) {
	br := bufio.NewReader(bytes.NewReader(data))
	if _, err := f.Header(br); err != nil {
		return
	}
	for {
		raw, err := f.ReadRecord(br)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		fields, err := f.Fields(raw)
		var re *RowError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("fields: %v", err)
		}
		prev := 0
		for _, fl := range fields {
			if fl.Start < prev || fl.End < fl.Start || fl.End > len(raw) {
				t.Fatalf("span [%d,%d) out of order or bounds (record of %d bytes)", fl.Start, fl.End, len(raw))
			}
			prev = fl.End
		}
		if _, ok := f.(*csvFormat); ok && err == nil {
			if got := splice(f, raw, fields); !bytes.Equal(got, raw) {
				t.Fatalf("re-encoding changed the record:\n%q\n%q", raw, got)
			}
		}
	}
}

// FuzzCSV checks that the CSV reader never panics, keeps spans in bounds, and that
// writing back each value as read gives the record back.
func FuzzCSV(f *testing.F) {
	f.Add([]byte("a,b,c\n1,\"x,\"\"y\"\"\r\nz\",3\n"))
	f.Add([]byte("\xEF\xBB\xBFa,b\r\n\"\",\n"))
	f.Add([]byte("a,b\n\"unclosed,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fm, err := newCSV(&Job{Columns: []Mapping{{Field: "a", Class: "x"}, {Field: "b", Class: "y"}}}, ',')
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, fm, data)
	})
}

// FuzzNDJSON checks that the NDJSON reader never panics on any line and keeps spans in
// bounds, with wildcard paths through arrays.
func FuzzNDJSON(f *testing.F) {
	f.Add([]byte(`{"a":{"b":["x","y"]},"c":null,"d":"\u00e9\n"}` + "\n" + `[1,{"a":{"b":[]}}]`))
	f.Add([]byte(`{"a":{"b":[{"z":1}]}}`))
	f.Add([]byte("not json\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fm, err := newNDJSON(&Job{Columns: []Mapping{{Field: "a.b[*]", Class: "x"}, {Field: "/d", Class: "y"}, {Field: "*", Class: "z"}}})
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, fm, data)
	})
}

func TestParsePath(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"/patient/ssn", []string{"patient", "ssn"}},
		{"/a~1b/c~0d", []string{"a/b", "c~d"}},
		{"patient.names[*].given[0]", []string{"patient", "names", "*", "given", "0"}},
		{"a[*][*]", []string{"a", "*", "*"}},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePath(tt.in)
			if err != nil || !equal(got, tt.want) {
				t.Fatalf("parsePath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	if _, err := parsePath("a[*"); err == nil {
		t.Fatal("an unclosed [ is refused")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
