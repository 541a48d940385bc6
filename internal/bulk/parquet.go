package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/grpc/status"
)

// Parquet jobs rewrite the mapped string leaf columns (dotted or pointer paths, nested
// fields and repeated fields alike) and keep everything else: the output has the
// input's schema, key-value metadata and compression codec, and one row group per
// input row group. Parquet needs random access, so input and output are files.
//
// Resume works by row group: each finished row group is written to its own part file
// under OUTPUT.parts (atomically) and the checkpoint counts them; the output is put
// together from the parts at the end, so a resumed job writes the same file.

type parquetJob struct {
	r      *run
	file   *parquet.File
	schema *parquet.Schema
	codec  parquet.WriterOption
	cols   map[int]Mapping // leaf column index → mapping
}

func (r *run) parquet(ctx context.Context) error {
	if r.job.Input == "-" || r.job.Output == "-" {
		return errors.New("parquet: input and output must be files")
	}
	f, err := os.Open(r.job.Input)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	r.in = &input{size: st.Size(), close: func() error { return nil }}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("input: not a Parquet file: %v", err)
	}
	p := &parquetJob{r: r, file: pf, schema: pf.Schema(), cols: map[int]Mapping{}}
	if err := p.mapColumns(); err != nil {
		return err
	}
	p.codec = parquet.Compression(&parquet.Uncompressed)
	if rgs := pf.Metadata().RowGroups; len(rgs) > 0 && len(rgs[0].Columns) > 0 {
		if c := parquet.LookupCompressionCodec(rgs[0].Columns[0].MetaData.Codec); c != nil {
			p.codec = parquet.Compression(c)
		}
	}
	parts := r.job.Output + ".parts"
	if !r.job.Resume {
		if err := os.RemoveAll(parts); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(parts, 0o700); err != nil {
		return err
	}
	for g := r.ck.RowGroups; g < len(pf.RowGroups()); g++ {
		if err := p.rowGroup(ctx, g, filepath.Join(parts, fmt.Sprintf("rg-%06d.parquet", g))); err != nil {
			return err
		}
		r.read.Store(st.Size() * int64(g+1) / int64(len(pf.RowGroups())))
		if err := r.parquetCheckpoint(g + 1); err != nil {
			return err
		}
	}
	if err := p.assemble(parts); err != nil {
		return err
	}
	return os.RemoveAll(parts)
}

func (p *parquetJob) mapColumns() error {
	for _, m := range p.r.job.Columns {
		segs, err := parsePath(m.Field)
		if err != nil {
			return fmt.Errorf("column %q: %v", m.Field, err)
		}
		leaf, ok := p.schema.Lookup(segs...)
		if !ok {
			return fmt.Errorf("column %q: not a leaf column of the Parquet schema", m.Field)
		}
		if leaf.Node.Type().Kind() != parquet.ByteArray {
			return fmt.Errorf("column %q: not a string (BYTE_ARRAY) column", m.Field)
		}
		p.cols[leaf.ColumnIndex] = Mapping{Field: strings.Join(leaf.Path, "."), Class: m.Class}
	}
	return nil
}

func (p *parquetJob) writer(w io.Writer) *parquet.Writer {
	opts := []parquet.WriterOption{p.schema, p.codec}
	for _, kv := range p.file.Metadata().KeyValueMetadata {
		opts = append(opts, parquet.KeyValueMetadata(kv.Key, kv.Value))
	}
	return parquet.NewWriter(w, opts...)
}

// rowGroup transforms row group g into the part file path.
func (p *parquetJob) rowGroup(ctx context.Context, g int, path string) error {
	tmp := path + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w := p.writer(out)
	if err := p.copyRowGroup(ctx, g, w); err != nil {
		out.Close()
		return err
	}
	if err := w.Close(); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// copyRowGroup reads row group g in batches of about BatchItems values, sends up to
// Concurrency batches at once, and writes their rows in input order: memory holds
// Concurrency batches, whatever the row group's size.
func (p *parquetJob) copyRowGroup(ctx context.Context, g int, w *parquet.Writer) error {
	rows := p.file.RowGroups()[g].Rows()
	defer rows.Close()
	per := max(1, p.r.job.BatchItems/max(1, len(p.cols)))
	buf := make([]parquet.Row, per)
	for eof := false; !eof; {
		var window []*pqBatch
		for len(window) < p.r.job.Concurrency && !eof {
			n, rerr := rows.ReadRows(buf)
			if n > 0 {
				b := &pqBatch{rows: make([]parquet.Row, n)}
				for i := range n {
					b.rows[i] = buf[i].Clone() // the reader reuses its buffers
				}
				window = append(window, b)
			}
			if eof = errors.Is(rerr, io.EOF); rerr != nil && !eof {
				return fmt.Errorf("input row group %d: %v", g, rerr)
			}
		}
		if err := p.sendAll(ctx, window); err != nil {
			return err
		}
		for _, b := range window {
			kept, err := p.apply(b)
			if err != nil {
				return err
			}
			if _, err := w.WriteRows(kept); err != nil {
				return err
			}
		}
	}
	return nil
}

// pqBatch is one batch of rows, their mapped values and the service's answers.
type pqBatch struct {
	rows  []parquet.Row
	refs  []pqRef
	items []Field
	out   []string
	errs  []error
}

type pqRef struct{ row, val int }

// sendAll sends the batches at once; the first failure of a whole request wins.
func (p *parquetJob) sendAll(ctx context.Context, window []*pqBatch) error {
	errc := make(chan error, len(window))
	for _, b := range window {
		go func() { errc <- p.send(ctx, b) }()
	}
	var first error
	for range window {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// send collects the batch's mapped values and gets their results, in requests of at
// most BatchItems values.
func (p *parquetJob) send(ctx context.Context, b *pqBatch) error {
	for i, row := range b.rows {
		for k, v := range row {
			m, ok := p.cols[v.Column()]
			if !ok || v.IsNull() || len(v.ByteArray()) == 0 {
				continue
			}
			b.refs = append(b.refs, pqRef{i, k})
			b.items = append(b.items, Field{Column: m.Field, Class: m.Class, Value: string(v.ByteArray())})
		}
	}
	b.out, b.errs = make([]string, len(b.items)), make([]error, len(b.items))
	for lo := 0; lo < len(b.items); lo += p.r.job.BatchItems {
		hi := min(lo+p.r.job.BatchItems, len(b.items))
		out, errs, err := p.r.send(ctx, b.items[lo:hi])
		if err != nil {
			return err
		}
		copy(b.out[lo:], out)
		copy(b.errs[lo:], errs)
	}
	return nil
}

// apply puts the results into the batch's rows, rejects the rows with a value the
// service refused, counts, and returns the rows to keep. Batches are applied in input
// order, so record numbers are the input's.
func (p *parquetJob) apply(b *pqBatch) ([]parquet.Row, error) {
	rejected := make([]*RowError, len(b.rows))
	for k, rf := range b.refs {
		it := b.items[k]
		if b.errs[k] != nil {
			st := status.Convert(b.errs[k])
			if !rowLevel(st) {
				return nil, fmt.Errorf("column %s: %s: %s", it.Column, st.Code(), st.Message())
			}
			if rejected[rf.row] == nil {
				rejected[rf.row] = &RowError{Column: it.Column, Reason: st.Message()}
			}
			continue
		}
		v := b.rows[rf.row][rf.val]
		b.rows[rf.row][rf.val] = parquet.ByteArrayValue([]byte(b.out[k])).Level(v.RepetitionLevel(), v.DefinitionLevel(), v.Column())
	}
	kept := b.rows[:0:0]
	for i, row := range b.rows {
		record := p.r.stats.records.Add(1)
		if rejected[i] != nil {
			if err := p.r.reject(record, rejected[i]); err != nil {
				return nil, err
			}
			continue
		}
		for _, v := range row {
			if m, ok := p.cols[v.Column()]; ok && !v.IsNull() && len(v.ByteArray()) > 0 {
				p.r.ck.Values[m.Class]++
			}
		}
		kept = append(kept, row)
		p.r.stats.rows.Add(1)
	}
	return kept, nil
}

func (r *run) parquetCheckpoint(groups int) error {
	var err error
	if r.ck.RejectBytes, err = r.rej.sync(); err != nil {
		return err
	}
	r.ck.RowGroups = groups
	r.ck.Records, r.ck.Rows, r.ck.Rejects = r.stats.records.Load(), r.stats.rows.Load(), r.stats.rejects.Load()
	return r.ck.write(r.job.Checkpoint)
}

// assemble writes the output from the part files, one row group per part.
func (p *parquetJob) assemble(parts string) error {
	tmp := p.r.job.Output + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w := p.writer(out)
	for g := range p.file.RowGroups() {
		if err := copyPart(w, filepath.Join(parts, fmt.Sprintf("rg-%06d.parquet", g))); err != nil {
			out.Close()
			return err
		}
		if err := w.Flush(); err != nil {
			out.Close()
			return err
		}
	}
	if err := w.Close(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, p.r.job.Output)
}

func copyPart(w *parquet.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("part %s: %v", filepath.Base(path), err)
	}
	for _, rg := range pf.RowGroups() {
		rows := rg.Rows()
		_, err := parquet.CopyRows(w, rows)
		rows.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
