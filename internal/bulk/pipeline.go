package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// ErrTooManyRejects stops a job whose rejects exceed --max-rejects.
var ErrTooManyRejects = errors.New("stopped: more rejects than --max-rejects allows")

// Summary is what a job did.
type Summary struct {
	Records int64          // data records read (header excluded)
	Rows    int64          // records written to the output
	Values  map[string]int // values processed per class
	Rejects int64
	Elapsed time.Duration
}

// RowsPerSec is the job's throughput.
func (s Summary) RowsPerSec() float64 { return float64(s.Records) / max(s.Elapsed.Seconds(), 1e-9) }

// Options are the parts of a run that are not the job itself.
type Options struct {
	Client   tokenizerv1.TokenizerServiceClient
	FHIR     tokenizerv1.FhirServiceClient // fhir-ndjson jobs
	Progress *Progress                     // nil: no progress output
}

// chunk is one batch of records: at most BatchItems values, sent as one request.
type chunk struct {
	seq      int64
	first    int64 // record number of recs[0]
	recs     [][]byte
	fields   [][]Field
	rowErr   []*RowError
	results  []string
	endInput int64 // decompressed input offset after the last record
	err      error
}

func (c *chunk) values() int {
	n := 0
	for _, f := range c.fields {
		n += len(f)
	}
	return n
}

// run is the state of one job.
type run struct {
	job   *Job
	fmt   Format
	opts  Options
	in    *input
	out   *output
	rej   *rejects
	ck    checkpoint
	read  atomic.Int64 // bytes read from the input file
	stats struct {
		records, rows, rejects atomic.Int64
	}
}

// Run executes a job to the end, to a fatal error, or to ErrTooManyRejects.
func Run(ctx context.Context, job *Job, opts Options) (Summary, error) {
	start := time.Now()
	if err := job.complete(); err != nil {
		return Summary{}, err
	}
	r := &run{job: job, opts: opts}
	r.ck = checkpoint{Version: 1, Job: jobDigest(job), Values: map[string]int{}}
	if job.Format == "parquet" {
		return r.runParquet(ctx, start)
	}
	var err error
	if r.fmt, err = newFormat(job); err != nil {
		return Summary{}, err
	}
	outAt, rejAt := int64(-1), int64(-1)
	if job.Resume {
		c, err := readCheckpoint(job.Checkpoint, r.ck.Job)
		if err != nil {
			return Summary{}, err
		}
		r.ck = *c
		outAt, rejAt = c.OutputBytes, c.RejectBytes
	}
	if r.in, err = openInput(job.Input, &r.read); err != nil {
		return Summary{}, err
	}
	defer r.in.close()
	if r.out, err = openOutput(job.Output, outAt); err != nil {
		return Summary{}, err
	}
	if r.rej, err = openRejects(job.RejectFile, rejAt); err != nil {
		r.out.Close()
		return Summary{}, err
	}
	r.stats.records.Store(r.ck.Records)
	r.stats.rows.Store(r.ck.Rows)
	r.stats.rejects.Store(r.ck.Rejects)
	if opts.Progress != nil {
		stop := opts.Progress.start(r.in.size, &r.read, &r.stats.records)
		defer stop()
	}
	err = r.pipeline(ctx)
	cerr := errors.Join(r.out.Close(), r.rej.close())
	sum := Summary{Records: r.stats.records.Load(), Rows: r.stats.rows.Load(), Values: r.ck.Values, Rejects: r.stats.rejects.Load(), Elapsed: time.Since(start)}
	if err == nil && cerr == nil && job.Checkpoint != "" {
		// Finished: nothing is left to resume.
		if rerr := os.Remove(job.Checkpoint); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			cerr = rerr
		}
	}
	if err == nil {
		err = cerr
	}
	return sum, err
}

// runParquet runs a Parquet job (see parquet.go).
func (r *run) runParquet(ctx context.Context, start time.Time) (Summary, error) {
	if job := r.job; job.Resume {
		c, err := readCheckpoint(job.Checkpoint, r.ck.Job)
		if err != nil {
			return Summary{}, err
		}
		r.ck = *c
	}
	rejAt := int64(-1)
	if r.job.Resume {
		rejAt = r.ck.RejectBytes
	}
	var err error
	if r.rej, err = openRejects(r.job.RejectFile, rejAt); err != nil {
		return Summary{}, err
	}
	r.stats.records.Store(r.ck.Records)
	r.stats.rows.Store(r.ck.Rows)
	r.stats.rejects.Store(r.ck.Rejects)
	if r.opts.Progress != nil {
		size := int64(-1)
		if st, err := os.Stat(r.job.Input); err == nil {
			size = st.Size()
		}
		stop := r.opts.Progress.start(size, &r.read, &r.stats.records)
		defer stop()
	}
	err = errors.Join(r.parquet(ctx), r.rej.close())
	sum := Summary{Records: r.stats.records.Load(), Rows: r.stats.rows.Load(), Values: r.ck.Values, Rejects: r.stats.rejects.Load(), Elapsed: time.Since(start)}
	if err == nil {
		if rerr := os.Remove(r.job.Checkpoint); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = rerr
		}
	}
	return sum, err
}

// pipeline reads chunks, sends up to Concurrency of them at once, and writes them in
// input order. At most 2×Concurrency chunks exist at any time, so memory is bounded
// whatever the input size.
func (r *run) pipeline(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slots := make(chan struct{}, 2*r.job.Concurrency)
	todo := make(chan *chunk)
	done := make(chan *chunk, 2*r.job.Concurrency)
	var wg sync.WaitGroup
	for range r.job.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range todo {
				c.err = r.call(ctx, c)
				done <- c
			}
		}()
	}
	go func() {
		err := r.produce(ctx, slots, todo)
		close(todo)
		wg.Wait()
		if err != nil {
			done <- &chunk{seq: -1, err: err}
		}
		close(done)
	}()
	err := r.consume(done, slots)
	if err != nil {
		cancel(err)
	}
	for range done { // let the producer and workers finish
	}
	return err
}

// rec is one record read from the input.
type rec struct {
	raw    []byte
	fields []Field
	re     *RowError
}

func (r *run) next() (*rec, error) {
	raw, err := r.fmt.ReadRecord(r.in.r)
	if err != nil {
		return nil, err
	}
	fields, ferr := r.fmt.Fields(raw)
	var re *RowError
	if ferr != nil && !errors.As(ferr, &re) {
		return nil, ferr
	}
	return &rec{raw: raw, fields: fields, re: re}, nil
}

// start writes the header, or on resume skips the input already done.
func (r *run) start() (int64, error) {
	hdr, err := r.fmt.Header(r.in.r)
	if err != nil {
		return 0, fmt.Errorf("input: %w", err)
	}
	if r.job.Resume {
		if _, err := io.CopyN(io.Discard, r.in.r, r.ck.InputOffset-int64(len(hdr))); err != nil {
			return 0, fmt.Errorf("resume: the input is shorter than the checkpoint says: %w", err)
		}
		return r.ck.InputOffset, nil
	}
	if _, err := r.out.Write(hdr); err != nil {
		return 0, err
	}
	return int64(len(hdr)), nil
}

// produce reads the input into chunks of about BatchItems values. Chunk boundaries
// depend only on the input, so every run cuts (and checkpoints) at the same places.
func (r *run) produce(ctx context.Context, slots chan struct{}, todo chan<- *chunk) error {
	offset, err := r.start()
	if err != nil {
		return err
	}
	record := r.ck.Records
	var carry *rec
	for seq := int64(0); ; seq++ {
		c := &chunk{seq: seq, first: record + 1}
		n, size, eof := 0, 0, false
		for {
			rc := carry
			carry = nil
			if rc == nil {
				if rc, err = r.next(); errors.Is(err, io.EOF) {
					eof = true
					break
				} else if err != nil {
					return fmt.Errorf("input record %d: %w", record+1, err)
				}
			}
			vb := valueBytes(rc.fields)
			if len(c.recs) > 0 && (n+len(rc.fields) > r.job.BatchItems || len(c.recs) >= 4*r.job.BatchItems || size+vb > maxChunkBytes) {
				carry = rc
				break
			}
			c.recs, c.fields, c.rowErr = append(c.recs, rc.raw), append(c.fields, rc.fields), append(c.rowErr, rc.re)
			n += len(rc.fields)
			size += vb
			offset += int64(len(rc.raw))
			record++
		}
		if len(c.recs) == 0 {
			return nil
		}
		c.endInput = offset
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		select {
		case todo <- c:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if eof {
			return nil
		}
	}
}

// maxChunkBytes bounds the values of one chunk, so that a request stays under the
// service's message limit (4 MiB by default) when values are large (FHIR resources).
const maxChunkBytes = 2 << 20

func valueBytes(fields []Field) int {
	n := 0
	for _, f := range fields {
		n += len(f.Value)
	}
	return n
}

// consume writes chunks in input order and checkpoints every CheckpointRows records.
func (r *run) consume(done <-chan *chunk, slots chan struct{}) error {
	pending := map[int64]*chunk{}
	next, since := int64(0), 0
	var buf []byte
	for c := range done {
		if c.err != nil {
			return c.err
		}
		pending[c.seq] = c
		for {
			c, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			var err error
			if buf, err = r.write(c, buf); err != nil {
				return err
			}
			<-slots
			next++
			if since += len(c.recs); since >= r.job.CheckpointRows {
				if err := r.checkpoint(c); err != nil {
					return err
				}
				since = 0
			}
		}
	}
	return nil
}

// write splices each record's results into its raw bytes, or rejects the record.
func (r *run) write(c *chunk, buf []byte) ([]byte, error) {
	k := 0
	for i, raw := range c.recs {
		r.stats.records.Add(1)
		fields := c.fields[i]
		if re := c.rowErr[i]; re != nil {
			k += len(fields)
			if err := r.reject(c.first+int64(i), re); err != nil {
				return buf, err
			}
			continue
		}
		buf = buf[:0]
		prev := 0
		for _, f := range fields {
			buf = append(buf, raw[prev:f.Start]...)
			buf = r.fmt.Encode(buf, f, c.results[k])
			prev = f.End
			k++
			r.ck.Values[f.Class]++
		}
		buf = append(buf, raw[prev:]...)
		if _, err := r.out.Write(buf); err != nil {
			return buf, err
		}
		r.stats.rows.Add(1)
	}
	return buf, nil
}

func (r *run) reject(record int64, re *RowError) error {
	if err := r.rej.add(record, re.Column, re.Reason); err != nil {
		return err
	}
	if n := r.stats.rejects.Add(1); r.job.MaxRejects >= 0 && n > int64(r.job.MaxRejects) {
		return ErrTooManyRejects
	}
	return nil
}

func (r *run) checkpoint(c *chunk) error {
	if r.job.Checkpoint == "" {
		return nil
	}
	var err error
	if r.ck.OutputBytes, err = r.out.Sync(); err != nil {
		return err
	}
	if r.ck.RejectBytes, err = r.rej.sync(); err != nil {
		return err
	}
	r.ck.InputOffset = c.endInput
	r.ck.Records = c.first + int64(len(c.recs)) - 1
	r.ck.Rows, r.ck.Rejects = r.stats.rows.Load(), r.stats.rejects.Load()
	return r.ck.write(r.job.Checkpoint)
}

// call sends a chunk's values, in requests of at most BatchItems, and stores the
// results. A value the service refuses (it does not fit its class, or the token is
// unknown) rejects its record; any other failure fails the job.
func (r *run) call(ctx context.Context, c *chunk) error {
	type ref struct{ rec, field int }
	var refs []ref
	for i, fs := range c.fields {
		for k := range fs {
			refs = append(refs, ref{i, k})
		}
	}
	c.results = make([]string, len(refs))
	for lo := 0; lo < len(refs); lo += r.job.BatchItems {
		sub := refs[lo:min(lo+r.job.BatchItems, len(refs))]
		items := make([]Field, len(sub))
		for i, rf := range sub {
			items[i] = c.fields[rf.rec][rf.field]
		}
		out, errs, err := r.send(ctx, items)
		if err != nil {
			return err
		}
		for i, rf := range sub {
			c.results[lo+i] = out[i]
			if errs[i] == nil {
				continue
			}
			var re *RowError
			if errors.As(errs[i], &re) {
				if c.rowErr[rf.rec] == nil {
					c.rowErr[rf.rec] = re
				}
				continue
			}
			st := status.Convert(errs[i])
			if !rowLevel(st) {
				return fmt.Errorf("column %s: %s: %s", items[i].Column, st.Code(), st.Message())
			}
			if c.rowErr[rf.rec] == nil {
				c.rowErr[rf.rec] = &RowError{Column: items[i].Column, Reason: st.Message()}
			}
		}
	}
	return nil
}

// rowLevel tells a problem with one value from a problem with the job.
func rowLevel(st *status.Status) bool {
	switch st.Code() {
	case codes.NotFound:
		return true
	case codes.InvalidArgument:
		return !strings.Contains(st.Message(), "unknown class")
	}
	return false
}
