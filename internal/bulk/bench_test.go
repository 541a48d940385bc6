package bulk

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkCSVRecord measures the client's own work per CSV record (read, locate three
// mapped cells, splice results back), apart from the service.
func BenchmarkCSVRecord(b *testing.B) {
	var in bytes.Buffer
	in.WriteString("id,ssn,mrn,name,visit_date\n")
	for i := range 10000 {
		fmt.Fprintf(&in, "%d,%03d-45-6789,MRN-%08d,\"Doe, Jane %d\",2024-03-24\n", i, i%665+1, i, i)
	}
	data := in.Bytes()
	f, err := newCSV(&Job{Columns: []Mapping{{"ssn", "ssn"}, {"mrn", "mrn"}, {"name", "name"}}}, ',')
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)) / 10000)
	b.ReportAllocs()
	var out []byte
	b.ResetTimer()
	for n := 0; n < b.N; {
		br := bufio.NewReader(bytes.NewReader(data))
		if _, err := f.Header(br); err != nil {
			b.Fatal(err)
		}
		for ; n < b.N; n++ {
			raw, err := f.ReadRecord(br)
			if err != nil {
				break
			}
			fields, _ := f.Fields(raw)
			out = splice(f, raw, fields)
		}
	}
	_ = out
}
