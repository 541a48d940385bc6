package bulk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// compression is how a file is compressed, from its extension (output) or its first
// bytes (input).
type compression int

const (
	plain compression = iota
	gzipped
	zstded
)

func compressionOf(name string) compression {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".gz"):
		return gzipped
	case strings.HasSuffix(n, ".zst"), strings.HasSuffix(n, ".zstd"):
		return zstded
	}
	return plain
}

// countReader counts the bytes read from the underlying file, for progress.
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// input is the decompressed input stream and the size of the file behind it.
type input struct {
	r     *bufio.Reader
	size  int64 // bytes on disk; -1 when unknown (a pipe)
	close func() error
}

func openInput(name string, read *atomic.Int64) (*input, error) {
	var f *os.File
	size := int64(-1)
	if name == "-" {
		f = os.Stdin
	} else {
		var err error
		if f, err = os.Open(name); err != nil {
			return nil, err
		}
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
	}
	raw := bufio.NewReaderSize(countReader{r: f, n: read}, 256<<10)
	magic, _ := raw.Peek(4)
	in := &input{size: size, close: f.Close}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := kgzip.NewReader(raw)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("input: gzip: %v", err)
		}
		in.r = bufio.NewReaderSize(zr, 256<<10)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("input: zstd: %v", err)
		}
		in.r = bufio.NewReaderSize(zr, 256<<10)
		in.close = func() error { zr.Close(); return f.Close() }
	default:
		in.r = raw
	}
	return in, nil
}

// countWriter counts the bytes written to the output file.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// resettable is a compressor that can end its stream and start a new one; gzip
// members and zstd frames may be concatenated, and readers see one stream.
type resettable interface {
	io.WriteCloser
	Reset(io.Writer)
}

type zstdResettable struct{ *zstd.Encoder }

func (z zstdResettable) Reset(w io.Writer) { z.Encoder.Reset(w) }

// output writes the (compressed) output. Sync ends the current gzip member or zstd
// frame at a checkpoint, so that the file can be cut there and appended to on resume
// and still give the same bytes as a run that never stopped.
type output struct {
	f    *os.File
	cw   *countWriter
	comp resettable
	bw   *bufio.Writer
}

func openOutput(name string, resumeAt int64) (*output, error) {
	o := &output{}
	if name == "-" {
		o.f = os.Stdout
	} else {
		flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if resumeAt >= 0 {
			flags = os.O_WRONLY
		}
		f, err := os.OpenFile(name, flags, 0o600)
		if err != nil {
			return nil, err
		}
		o.f = f
		if resumeAt >= 0 {
			if err := f.Truncate(resumeAt); err != nil {
				f.Close()
				return nil, err
			}
			if _, err := f.Seek(resumeAt, io.SeekStart); err != nil {
				f.Close()
				return nil, err
			}
		}
	}
	o.cw = &countWriter{w: o.f, n: max(resumeAt, 0)}
	var dst io.Writer = o.cw
	switch compressionOf(name) {
	case gzipped:
		o.comp = kgzip.NewWriter(o.cw)
	case zstded:
		enc, err := zstd.NewWriter(o.cw, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		o.comp = zstdResettable{enc}
	}
	if o.comp != nil {
		dst = o.comp
	}
	o.bw = bufio.NewWriterSize(dst, 256<<10)
	return o, nil
}

func (o *output) Write(p []byte) (int, error) { return o.bw.Write(p) }

// Sync makes everything written so far durable and returns the file size.
func (o *output) Sync() (int64, error) {
	if err := o.bw.Flush(); err != nil {
		return 0, err
	}
	if o.comp != nil {
		if err := o.comp.Close(); err != nil {
			return 0, err
		}
		o.comp.Reset(o.cw)
	}
	if o.f != os.Stdout {
		if err := o.f.Sync(); err != nil {
			return 0, err
		}
	}
	return o.cw.n, nil
}

// Close ends the output.
func (o *output) Close() error {
	err := o.bw.Flush()
	if o.comp != nil && err == nil {
		err = o.comp.Close()
	}
	if o.f == os.Stdout {
		return err
	}
	return errors.Join(err, o.f.Close())
}
