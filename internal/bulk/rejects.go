package bulk

import (
	"bufio"
	"encoding/csv"
	"io"
	"os"
	"strconv"
)

// rejects is the reject file: CSV with the record number (1-based, header excluded),
// the column or path, and the reason. Never the value.
type rejects struct {
	f  *os.File
	bw *bufio.Writer
	cw *csv.Writer
	n  int64 // bytes in the file at the last flush
}

func openRejects(name string, resumeAt int64) (*rejects, error) {
	if name == "" {
		return &rejects{}, nil
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if resumeAt >= 0 {
		flags = os.O_CREATE | os.O_WRONLY
	}
	f, err := os.OpenFile(name, flags, 0o600)
	if err != nil {
		return nil, err
	}
	r := &rejects{f: f}
	if resumeAt >= 0 {
		if err := f.Truncate(resumeAt); err != nil {
			f.Close()
			return nil, err
		}
		if _, err := f.Seek(resumeAt, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		r.n = resumeAt
	}
	r.bw = bufio.NewWriter(f)
	r.cw = csv.NewWriter(r.bw)
	if resumeAt <= 0 {
		_ = r.cw.Write([]string{"record", "column", "reason"})
	}
	return r, nil
}

func (r *rejects) add(record int64, column, reason string) error {
	if r.cw == nil {
		return nil
	}
	return r.cw.Write([]string{strconv.FormatInt(record, 10), column, reason})
}

// sync flushes and returns the file size.
func (r *rejects) sync() (int64, error) {
	if r.cw == nil {
		return 0, nil
	}
	r.cw.Flush()
	if err := r.cw.Error(); err != nil {
		return 0, err
	}
	if err := r.f.Sync(); err != nil {
		return 0, err
	}
	st, err := r.f.Stat()
	if err != nil {
		return 0, err
	}
	r.n = st.Size()
	return r.n, nil
}

func (r *rejects) close() error {
	if r.cw == nil {
		return nil
	}
	r.cw.Flush()
	return r.f.Close()
}
