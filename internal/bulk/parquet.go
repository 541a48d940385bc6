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
	rows := p.file.RowGroups()[g].Rows()
	defer rows.Close()
	per := max(1, p.r.job.BatchItems/max(1, len(p.cols)))
	buf := make([]parquet.Row, per)
	for {
		n, rerr := rows.ReadRows(buf)
		if n > 0 {
			kept, err := p.transform(ctx, buf[:n])
			if err != nil {
				out.Close()
				return err
			}
			if _, err := w.WriteRows(kept); err != nil {
				out.Close()
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			out.Close()
			return fmt.Errorf("input row group %d: %v", g, rerr)
		}
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

// transform replaces the mapped values of rows and returns the rows to keep.
func (p *parquetJob) transform(ctx context.Context, rows []parquet.Row) ([]parquet.Row, error) {
	type ref struct{ row, val int }
	var refs []ref
	var items []Field
	for i, row := range rows {
		for k, v := range row {
			m, ok := p.cols[v.Column()]
			if !ok || v.IsNull() || len(v.ByteArray()) == 0 {
				continue
			}
			refs = append(refs, ref{i, k})
			items = append(items, Field{Column: m.Field, Class: m.Class, Value: string(v.ByteArray())})
		}
	}
	rejected := make([]*RowError, len(rows))
	for lo := 0; lo < len(items); lo += p.r.job.BatchItems {
		hi := min(lo+p.r.job.BatchItems, len(items))
		out, errs, err := p.r.send(ctx, items[lo:hi])
		if err != nil {
			return nil, err
		}
		for k := range out {
			rf, it := refs[lo+k], items[lo+k]
			if errs[k] != nil {
				st := status.Convert(errs[k])
				if !rowLevel(st) {
					return nil, fmt.Errorf("column %s: %s: %s", it.Column, st.Code(), st.Message())
				}
				if rejected[rf.row] == nil {
					rejected[rf.row] = &RowError{Column: it.Column, Reason: st.Message()}
				}
				continue
			}
			v := rows[rf.row][rf.val]
			rows[rf.row][rf.val] = parquet.ByteArrayValue([]byte(out[k])).Level(v.RepetitionLevel(), v.DefinitionLevel(), v.Column())
		}
	}
	kept := rows[:0:0]
	for i, row := range rows {
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
