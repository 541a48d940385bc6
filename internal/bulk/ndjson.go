package bulk

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ndjsonFormat is one JSON value per line. Values are chosen by JSON pointer
// ("/patient/ssn") or dotted path ("patient.ssn"); "*" (or "[*]" in a dotted path)
// matches every element of an array, so nested arrays are reached too. Only the
// chosen strings are rewritten (with minimal JSON escaping); every other byte of the
// line is kept. null stays null and "" stays "".
type ndjsonFormat struct {
	paths []ndPath
}

type ndPath struct {
	segs  []string
	name  string
	class string
}

func newNDJSON(j *Job) (Format, error) {
	f := &ndjsonFormat{}
	for _, m := range j.Columns {
		segs, err := parsePath(m.Field)
		if err != nil {
			return nil, fmt.Errorf("path %q: %v", m.Field, err)
		}
		f.paths = append(f.paths, ndPath{segs: segs, name: m.Field, class: m.Class})
	}
	return f, nil
}

// parsePath accepts a JSON pointer (RFC 6901) or a dotted path with [n] or [*].
func parsePath(p string) ([]string, error) {
	if p == "" {
		return nil, errors.New("empty path")
	}
	if strings.HasPrefix(p, "/") {
		segs := strings.Split(p[1:], "/")
		for i, s := range segs {
			segs[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
		}
		return segs, nil
	}
	var segs []string
	for _, part := range strings.Split(p, ".") {
		for {
			k := strings.IndexByte(part, '[')
			if k < 0 {
				break
			}
			if k > 0 {
				segs = append(segs, part[:k])
			}
			end := strings.IndexByte(part, ']')
			if end < k {
				return nil, errors.New("unclosed [")
			}
			segs = append(segs, part[k+1:end])
			part = part[end+1:]
		}
		if part != "" {
			segs = append(segs, part)
		}
	}
	if len(segs) == 0 {
		return nil, errors.New("empty path")
	}
	return segs, nil
}

func (f *ndjsonFormat) Header(*bufio.Reader) ([]byte, error) { return nil, nil }

func (f *ndjsonFormat) ReadRecord(r *bufio.Reader) ([]byte, error) {
	var rec []byte
	for {
		piece, err := r.ReadSlice('\n')
		rec = append(rec, piece...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil:
			return rec, nil
		case errors.Is(err, io.EOF) && len(rec) > 0:
			return rec, nil
		default:
			return nil, err
		}
	}
}

func (f *ndjsonFormat) Fields(raw []byte) ([]Field, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	if !json.Valid(raw) {
		return nil, &RowError{Column: "-", Reason: "not valid JSON"}
	}
	s := &jscan{b: raw, paths: f.paths}
	if err := s.value(); err != nil {
		return nil, err
	}
	return s.out, nil
}

// jscan walks a line already known to be valid JSON and records the spans of the
// strings at the mapped paths.
type jscan struct {
	b     []byte
	i     int
	path  []string
	paths []ndPath
	out   []Field
}

func (s *jscan) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\r' || s.b[s.i] == '\n') {
		s.i++
	}
}

func (s *jscan) match() *ndPath {
	for k := range s.paths {
		p := &s.paths[k]
		if len(p.segs) != len(s.path) {
			continue
		}
		ok := true
		for i, seg := range p.segs {
			if seg != "*" && seg != s.path[i] {
				ok = false
				break
			}
		}
		if ok {
			return p
		}
	}
	return nil
}

// str reads the string at s.i and returns its decoded value and span.
func (s *jscan) str() (string, int, int) {
	start := s.i
	j := start + 1
	escaped := false
	for ; s.b[j] != '"'; j++ {
		if s.b[j] == '\\' {
			escaped = true
			j++
		}
	}
	s.i = j + 1
	if !escaped {
		return string(s.b[start+1 : j]), start, s.i
	}
	var v string
	_ = json.Unmarshal(s.b[start:s.i], &v)
	return v, start, s.i
}

func (s *jscan) value() error {
	s.ws()
	switch s.b[s.i] {
	case '{':
		return s.container('}', true)
	case '[':
		return s.container(']', false)
	case '"':
		v, start, end := s.str()
		if p := s.match(); p != nil && v != "" {
			s.out = append(s.out, Field{Start: start, End: end, Column: p.name, Class: p.class, Value: v})
		}
		return nil
	}
	start := s.i
	for s.i < len(s.b) && !strings.ContainsRune(",}] \t\r\n", rune(s.b[s.i])) {
		s.i++
	}
	if p := s.match(); p != nil && string(s.b[start:s.i]) != "null" {
		return &RowError{Column: p.name, Reason: "not a string"}
	}
	return nil
}

func (s *jscan) container(closer byte, object bool) error {
	s.i++
	for idx := 0; ; idx++ {
		s.ws()
		if s.b[s.i] == closer {
			s.i++
			return nil
		}
		if s.b[s.i] == ',' {
			s.i++
			s.ws()
		}
		seg := strconv.Itoa(idx)
		if object {
			seg, _, _ = s.str()
			s.ws()
			s.i++ // ':'
		}
		s.path = append(s.path, seg)
		err := s.value()
		s.path = s.path[:len(s.path)-1]
		if err != nil {
			return err
		}
	}
}

func (f *ndjsonFormat) Encode(dst []byte, _ Field, value string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
