package bulk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// csvFormat is RFC 4180 with a header row, a configurable delimiter and quote, an
// optional UTF-8 byte order mark and LF or CRLF line ends, all kept as they were.
type csvFormat struct {
	delim, quote byte
	want         map[string]string // column name → class
	cols         map[int]string    // column index → name, once the header is read
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

func newCSV(j *Job, delim byte) (Format, error) {
	f := &csvFormat{delim: delim, quote: '"', want: map[string]string{}}
	if j.Delimiter != "" {
		if len(j.Delimiter) != 1 {
			return nil, errors.New("delimiter: want one ASCII character")
		}
		f.delim = j.Delimiter[0]
	}
	if j.Quote != "" {
		if len(j.Quote) != 1 {
			return nil, errors.New("quote: want one ASCII character")
		}
		f.quote = j.Quote[0]
	}
	for _, m := range j.Columns {
		f.want[m.Field] = m.Class
	}
	return f, nil
}

func (f *csvFormat) Header(r *bufio.Reader) ([]byte, error) {
	raw, err := f.ReadRecord(r)
	if errors.Is(err, io.EOF) {
		return nil, errors.New("input is empty: a header row is required")
	}
	if err != nil {
		return nil, err
	}
	names, err := f.split(bytes.TrimPrefix(raw, utf8BOM))
	if err != nil {
		return nil, fmt.Errorf("header row: %v", err)
	}
	f.cols = map[int]string{}
	seen := map[string]bool{}
	for i, n := range names {
		if _, ok := f.want[n.value]; ok {
			f.cols[i] = n.value
			seen[n.value] = true
		}
	}
	for name := range f.want {
		if !seen[name] {
			return nil, fmt.Errorf("column %q: not in the header row", name)
		}
	}
	return raw, nil
}

// ReadRecord reads up to a line end outside quotes: a quoted field may hold newlines.
func (f *csvFormat) ReadRecord(r *bufio.Reader) ([]byte, error) {
	var rec []byte
	inQuote := false
	for {
		piece, err := r.ReadSlice('\n')
		rec = append(rec, piece...)
		// Toggling on every quote is exact for RFC 4180: an escaped quote is doubled.
		inQuote = inQuote != (bytes.Count(piece, []byte{f.quote})%2 == 1)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil && !inQuote:
			return rec, nil
		case err == nil:
			continue
		case errors.Is(err, io.EOF) && len(rec) > 0:
			return rec, nil
		default:
			return nil, err
		}
	}
}

type csvCell struct {
	start, end int
	quoted     bool
	value      string
}

// split parses one record (with its terminator) into cells with their byte spans.
func (f *csvFormat) split(raw []byte) ([]csvCell, error) {
	n := len(raw)
	if n > 0 && raw[n-1] == '\n' {
		n--
		if n > 0 && raw[n-1] == '\r' {
			n--
		}
	}
	var cells []csvCell
	for i := 0; ; {
		c := csvCell{start: i}
		if i < n && raw[i] == f.quote {
			var sb strings.Builder
			j := i + 1
			for {
				k := bytes.IndexByte(raw[j:n], f.quote)
				if k < 0 {
					return nil, errors.New("a quoted field is not closed")
				}
				sb.Write(raw[j : j+k])
				j += k + 1
				if j < n && raw[j] == f.quote {
					sb.WriteByte(f.quote)
					j++
					continue
				}
				break
			}
			if j < n && raw[j] != f.delim {
				return nil, errors.New("text after a closing quote")
			}
			c.end, c.quoted, c.value = j, true, sb.String()
		} else {
			k := bytes.IndexByte(raw[i:n], f.delim)
			if k < 0 {
				k = n - i
			}
			if bytes.ContainsAny(raw[i:i+k], string([]byte{f.quote, '\r', '\n'})) {
				return nil, errors.New("a quote or line break inside an unquoted field (RFC 4180)")
			}
			c.end, c.value = i+k, string(raw[i:i+k])
		}
		cells = append(cells, c)
		if c.end >= n {
			return cells, nil
		}
		i = c.end + 1
	}
}

func (f *csvFormat) Fields(raw []byte) ([]Field, error) {
	cells, err := f.split(raw)
	if err != nil {
		return nil, &RowError{Column: "-", Reason: "malformed CSV record: " + err.Error()}
	}
	var out []Field
	for i, c := range cells {
		name, ok := f.cols[i]
		if !ok || c.value == "" {
			continue
		}
		out = append(out, Field{Start: c.start, End: c.end, Column: name, Class: f.want[name], Value: c.value, Quoted: c.quoted})
	}
	return out, nil
}

func (f *csvFormat) Encode(dst []byte, fl Field, value string) []byte {
	if !fl.Quoted && !strings.ContainsAny(value, string([]byte{f.delim, f.quote, '\r', '\n'})) {
		return append(dst, value...)
	}
	dst = append(dst, f.quote)
	q := string(f.quote)
	dst = append(dst, strings.ReplaceAll(value, q, q+q)...)
	return append(dst, f.quote)
}
