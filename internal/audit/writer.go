package audit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phivault/tokenizer/internal/errs"
)

// Sink receives audit events. Append returns only once the event is durable; an
// error means the request must fail and reveal nothing.
type Sink interface {
	Append(ctx context.Context, ev *Event) error
}

// Noop discards events. It exists to measure what auditing costs; the service never
// runs with it.
type Noop struct{}

// Append discards ev.
func (Noop) Append(context.Context, *Event) error { return nil }

// Writer appends events to the chain with group commit: while one batch commits,
// the events that arrive queue up and go in the next transaction together. Any
// number of writers (replicas) append to one chain; a PostgreSQL advisory lock
// orders their batches.
type Writer struct {
	store    Appender
	log      *slog.Logger
	timeout  time.Duration
	maxBatch int
	queue    chan *pending
	appended atomic.Int64
	done     chan struct{}
	macKey   atomic.Pointer[MACKey]
	observer atomic.Pointer[BatchObserver]

	mu     sync.RWMutex // Append holds it for reading while it queues; Close for writing
	closed bool
}

type pending struct {
	ev  *Event
	err chan error
}

// NewWriter starts a writer; Close stops it.
func NewWriter(st Appender, log *slog.Logger, timeout time.Duration) *Writer {
	w := &Writer{store: st, log: log, timeout: timeout, maxBatch: 1024, queue: make(chan *pending, 4096), done: make(chan struct{})}
	go w.run()
	return w
}

// BatchObserver is told of every batch the writer appended (or failed to): how many
// events it carried and how long its transaction took.
type BatchObserver func(events int, took time.Duration, err error)

// SetObserver has o told of every batch from now on.
func (w *Writer) SetObserver(o BatchObserver) { w.observer.Store(&o) }

// Appended is how many events this writer has committed.
func (w *Writer) Appended() int64 { return w.appended.Load() }

// Append queues ev and waits until its batch is committed. On success ev.Seq is set.
func (w *Writer) Append(ctx context.Context, ev *Event) error {
	p := &pending{ev: ev, err: make(chan error, 1)}
	if err := w.enqueue(ctx, p); err != nil {
		return err
	}
	// Wait for the commit, or until ctx ends: then the caller fails closed (it reveals
	// nothing and answers UNAVAILABLE) while the event may still commit, which
	// overstates a disclosure rather than hides one. This bounds a request by its
	// deadline even while the database link is frozen and batches queue up.
	select {
	case err := <-p.err:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit log: %w: %w", errs.ErrUnavailable, ctx.Err())
	}
}

// enqueue hands p to the writer. The read lock keeps Close from closing the queue
// during the send: a send on a closed channel would panic.
func (w *Writer) enqueue(ctx context.Context, p *pending) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return fmt.Errorf("audit log: writer stopped: %w", errs.ErrUnavailable)
	}
	// An event goes in whenever there is room, even when ctx has ended: a request
	// whose client gave up is still recorded.
	select {
	case w.queue <- p:
		return nil
	default:
	}
	select {
	case w.queue <- p:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit log: %w: %w", errs.ErrUnavailable, ctx.Err())
	}
}

// Close stops the writer after the queued events are written; later appends fail.
func (w *Writer) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.done
}

func (w *Writer) run() {
	defer close(w.done)
	for first := range w.queue {
		batch := []*pending{first}
	drain:
		for len(batch) < w.maxBatch {
			select {
			case p, ok := <-w.queue:
				if !ok {
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		start := time.Now()
		err := w.write(batch)
		if o := w.observer.Load(); o != nil {
			(*o)(len(batch), time.Since(start), err)
		}
		if err != nil {
			w.log.Error("audit append failed: requests fail closed", slog.Int("events", len(batch)), slog.String("error", err.Error()))
			err = fmt.Errorf("audit log: %w: %w", errs.ErrUnavailable, err)
		} else {
			w.appended.Add(int64(len(batch)))
		}
		for _, p := range batch {
			p.err <- err
		}
	}
}

func (w *Writer) write(batch []*pending) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	return w.store.AppendAudit(ctx, func(headSeq int64, headHash []byte) ([]Row, error) {
		prev := headHash
		if headSeq == 0 {
			prev = GenesisHash
		}
		rows := make([]Row, len(batch))
		for i, p := range batch {
			p.ev.Seq = headSeq + int64(i) + 1
			body := p.ev.Canonical()
			h := Hash(prev, body)
			rows[i] = Row{
				Seq: p.ev.Seq, PrevHash: prev, Hash: h, Body: string(body), Time: p.ev.Time,
				Operation: p.ev.Operation, Caller: p.ev.Caller, TokenDigests: queryDigests(p.ev),
			}
			prev = h
		}
		return rows, w.authenticate(rows)
	})
}

// queryDigests are the digests the store indexes for an event: its token digests and
// its subject digests, so that disclosures and receipts are found by either.
// The subject digests go in as the body holds them: sorted, without duplicates, so that
// verification can hold the column to the body.
func queryDigests(e *Event) [][]byte {
	if len(e.SubjectDigests) == 0 {
		return e.TokenDigests
	}
	subjects := slices.Clone(e.SubjectDigests)
	slices.SortFunc(subjects, bytes.Compare)
	subjects = slices.CompactFunc(subjects, bytes.Equal)
	return append(slices.Clone(e.TokenDigests), subjects...)
}
