package store

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
)

// auditLock serializes appends to the one audit chain across every replica. It is a
// transaction-scoped advisory lock, so the service needs no UPDATE right on any audit
// table (there is no head row to update).
const auditLock = 7_453_219_002

// AppendAudit appends a batch to the chain in one transaction: it takes the chain
// lock, reads the head, lets build chain the new rows onto it, and inserts them into
// their monthly partitions (creating a missing one). When it returns nil the rows are
// durably committed.
//
// Every request waits for the append of its event, so its round trips are few. When
// this process made the last append, it assumes that head and sends BEGIN, the lock,
// an INSERT of up to pipelinedAppend rows that inserts nothing unless the head is still
// the one assumed, and the COMMIT in one pipeline: one round trip. Otherwise (another
// replica appended, a larger batch, a month whose partition this process has not seen),
// BEGIN, the lock and the head read go in one pipeline and the rows in a second one
// with the COMMIT (two round trips), or, above pipelinedAppend rows, by COPY.
func (s *Store) AppendAudit(ctx context.Context, build func(headSeq int64, headHash []byte) ([]audit.Row, error)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return classify("begin audit append", err)
	}
	h := s.cachedHead()
	var built []audit.Row // rows built on h but not sent
	if h.seq > 0 {
		done, unsent, err := s.appendAtHead(ctx, conn, h, build)
		if err != nil || done {
			conn.Release()
			return err
		}
		built = unsent
	}
	// An open transaction (a failure on the way) is rolled back, or the connection
	// closed, which rolls it back and releases the lock.
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		conn.Release()
	}()
	seq, hash, headMonth, err := s.lockHead(ctx, conn)
	if err != nil {
		return err
	}
	rows := built
	if built == nil || seq != h.seq || !bytes.Equal(hash, h.hash) {
		if rows, err = build(seq, hash); err != nil {
			return err
		}
	}
	months := partitionMonths(headMonth, rows)
	ensured, err := s.ensurePartitions(ctx, conn, months)
	if err != nil {
		return err
	}
	if err := insertAndCommit(ctx, conn, rows, months); err != nil {
		s.noteMonths(nil) // a partition gone (detached?): check again next time
		return err
	}
	if len(ensured) > 0 {
		s.noteMonths(ensured) // (noteMonths(nil) would forget every month)
	}
	if len(months) > 0 {
		s.noteHeadMonth(months[len(months)-1])
		s.setHead(auditHead{seq: rows[len(rows)-1].Seq, hash: rows[len(rows)-1].Hash, month: months[len(months)-1]})
	}
	return nil
}

// auditHead is a chain head as this process last appended it.
type auditHead struct {
	seq   int64
	hash  []byte
	month time.Time
}

func (s *Store) cachedHead() auditHead {
	s.monthsMu.Lock()
	defer s.monthsMu.Unlock()
	return s.head
}

func (s *Store) setHead(h auditHead) {
	s.monthsMu.Lock()
	defer s.monthsMu.Unlock()
	s.head = h
}

// appendAtHead appends rows built on h in one round trip, if h is still the head and
// every partition the rows need is known to exist. It reports whether it appended;
// false with a nil error means the caller must append the slow way (rows unwritten,
// nothing left open). The rows it built but did not send (too many, or a month not
// known) are returned, for the slow way to use if the head it reads is h.
func (s *Store) appendAtHead(ctx context.Context, conn *pgxpool.Conn, h auditHead, build func(int64, []byte) ([]audit.Row, error)) (bool, []audit.Row, error) {
	rows, err := build(h.seq, h.hash)
	if err != nil {
		return false, nil, err
	}
	months := partitionMonths(h.month, rows)
	now := monthIndex(time.Now())
	if len(rows) == 0 || len(rows) > pipelinedAppend || !s.knownMonth(now) || !s.knownMonth(now+1) {
		return false, rows, nil
	}
	for _, m := range months {
		if !s.knownMonth(monthIndex(m)) {
			return false, rows, nil
		}
	}
	src := copyRows(rows, months)
	args := make([]any, 0, len(src)*len(auditColumns)+2)
	for _, r := range src {
		args = append(args, r...)
	}
	args = append(args, h.month, h.hash)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT pg_advisory_xact_lock($1)", int64(auditLock))
	b.Queue(insertAtHeadStatements[len(rows)], args...)
	b.Queue("COMMIT")
	res := conn.SendBatch(ctx, b)
	fail := func(what string, err error) (bool, []audit.Row, error) {
		res.Close()
		s.setHead(auditHead{})
		s.noteMonths(nil) // a partition gone (detached?): check again next time
		// The connection may be mid-transaction: close it rather than hand it back.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = conn.Conn().Close(cctx)
		cancel()
		return false, nil, classify(what, err)
	}
	if _, err := res.Exec(); err != nil {
		return fail("begin audit append", err)
	}
	if _, err := res.Exec(); err != nil {
		return fail("lock audit chain", err)
	}
	tag, err := res.Exec()
	if err != nil {
		return fail("insert audit events", err)
	}
	ctag, err := res.Exec()
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	if err := commitAudit(ctag, err); err != nil {
		s.setHead(auditHead{})
		return false, nil, err
	}
	if tag.RowsAffected() != int64(len(rows)) {
		// Another writer appended since: nothing was written (the transaction that
		// committed was empty).
		s.setHead(auditHead{})
		return false, nil, nil
	}
	last := len(rows) - 1
	s.noteHeadMonth(months[last])
	s.setHead(auditHead{seq: rows[last].Seq, hash: rows[last].Hash, month: months[last]})
	s.headAppends.Add(1)
	return true, nil, nil
}

// lockHead begins the append's transaction, takes the chain lock and reads the head,
// in one round trip. partition_month never decreases along the chain, so the head is in
// the partition of the newest month this process appended to or a later one: the query
// is pruned to those, instead of probing every partition of six years (and falls back
// to all of them if that finds nothing).
func (s *Store) lockHead(ctx context.Context, conn *pgxpool.Conn) (int64, []byte, time.Time, error) {
	const q = "SELECT seq, hash, partition_month FROM audit_events WHERE partition_month >= $1 ORDER BY seq DESC LIMIT 1"
	var seq int64
	var hash []byte
	var month time.Time
	since := s.headMonth()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT pg_advisory_xact_lock($1)", int64(auditLock))
	b.Queue(q, since)
	res := conn.SendBatch(ctx, b)
	_, err := res.Exec()
	if err != nil {
		res.Close()
		return 0, nil, time.Time{}, classify("begin audit append", err)
	}
	if _, err := res.Exec(); err != nil {
		res.Close()
		return 0, nil, time.Time{}, classify("lock audit chain", err)
	}
	err = res.QueryRow().Scan(&seq, &hash, &month)
	cerr := res.Close()
	if err != nil && err != pgx.ErrNoRows {
		return 0, nil, time.Time{}, classify("read audit head", err)
	}
	if cerr != nil {
		return 0, nil, time.Time{}, classify("read audit head", cerr)
	}
	if err == pgx.ErrNoRows && !since.Equal(minMonth) {
		err = conn.QueryRow(ctx, q, minMonth).Scan(&seq, &hash, &month)
	}
	if err != nil && err != pgx.ErrNoRows {
		return 0, nil, time.Time{}, classify("read audit head", err)
	}
	return seq, hash, month, nil
}

// pipelinedAppend is the largest batch inserted by one multi-row INSERT pipelined with
// the COMMIT; each size is a prepared statement of its own on each connection.
const pipelinedAppend = 32

var auditColumns = []string{"seq", "prev_hash", "hash", "body", "time", "operation", "caller", "token_digests", "mac", "mac_version", "partition_month"}

// auditColumnTypes are the SQL types of auditColumns, for the casts of a VALUES list
// that no INSERT column types its parameters.
var auditColumnTypes = []string{"bigint", "bytea", "bytea", "text", "timestamptz", "text", "text", "bytea[]", "bytea", "integer", "date"}

// valueRows writes the parameters of n rows of auditColumns, ($1,$2,...),(...), each
// cast to its column's type when cast is set.
func valueRows(b *strings.Builder, n int, cast bool) {
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for k := range auditColumns {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, "$%d", i*len(auditColumns)+k+1)
			if cast {
				b.WriteString("::" + auditColumnTypes[k])
			}
		}
		b.WriteByte(')')
	}
}

// insertStatements[n] inserts n rows.
var insertStatements = func() []string {
	out := make([]string, pipelinedAppend+1)
	for n := 1; n <= pipelinedAppend; n++ {
		var b strings.Builder
		b.WriteString("INSERT INTO audit_events (" + strings.Join(auditColumns, ", ") + ") VALUES ")
		valueRows(&b, n, false)
		out[n] = b.String()
	}
	return out
}()

// insertAtHeadStatements[n] inserts n rows if, and only if, the chain's head (the
// newest event in the partitions from the month given after the rows) has the hash
// given last; otherwise it inserts none.
var insertAtHeadStatements = func() []string {
	out := make([]string, pipelinedAppend+1)
	cols := strings.Join(auditColumns, ", ")
	for n := 1; n <= pipelinedAppend; n++ {
		var b strings.Builder
		b.WriteString("INSERT INTO audit_events (" + cols + ") SELECT " + cols + " FROM (VALUES ")
		valueRows(&b, n, true)
		next := n*len(auditColumns) + 1
		fmt.Fprintf(&b, ") AS v (%s) WHERE (SELECT hash FROM audit_events WHERE partition_month >= $%d::date ORDER BY seq DESC LIMIT 1) = $%d::bytea",
			cols, next, next+1)
		out[n] = b.String()
	}
	return out
}()

// insertAndCommit inserts the rows and commits: one round trip for a small batch.
func insertAndCommit(ctx context.Context, conn *pgxpool.Conn, rows []audit.Row, months []time.Time) error {
	src := copyRows(rows, months)
	if len(rows) > pipelinedAppend {
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"audit_events"}, auditColumns, pgx.CopyFromRows(src)); err != nil {
			return classify("insert audit events", err)
		}
		return commitAudit(conn.Exec(ctx, "COMMIT"))
	}
	args := make([]any, 0, len(src)*len(auditColumns))
	for _, r := range src {
		args = append(args, r...)
	}
	b := &pgx.Batch{}
	b.Queue(insertStatements[len(rows)], args...)
	b.Queue("COMMIT")
	res := conn.SendBatch(ctx, b)
	if _, err := res.Exec(); err != nil {
		res.Close()
		return classify("insert audit events", err)
	}
	tag, err := res.Exec()
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	return commitAudit(tag, err)
}

// commitAudit checks a COMMIT: a transaction that failed answers ROLLBACK, not an error.
func commitAudit(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return classify("commit audit events", err)
	}
	if tag.String() != "COMMIT" {
		return classify("commit audit events", fmt.Errorf("the transaction was rolled back: %w", errs.ErrUnavailable))
	}
	return nil
}

// copyRows are rows as CopyFrom takes them, each with its partition month.
func copyRows(rows []audit.Row, months []time.Time) [][]any {
	src := make([][]any, len(rows))
	for i, r := range rows {
		digests := r.TokenDigests
		if digests == nil {
			digests = [][]byte{}
		}
		var macVersion *int32
		if r.MACVersion > 0 {
			v := int32(r.MACVersion)
			macVersion = &v
		}
		src[i] = []any{r.Seq, r.PrevHash, r.Hash, r.Body, r.Time, r.Operation, r.Caller, digests, r.MAC, macVersion, months[i]}
	}
	return src
}

// AuditHead returns the newest event's seq and hash (0 and nil when empty).
func (s *Store) AuditHead(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := s.pool.QueryRow(ctx, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").Scan(&seq, &hash)
	if err == pgx.ErrNoRows {
		return 0, nil, nil
	}
	return seq, hash, classify("read audit head", err)
}

// ReadAudit calls fn for every event with from ≤ seq ≤ to (to 0: no bound), in seq
// order, streaming.
func (s *Store) ReadAudit(ctx context.Context, from, to int64, fn func(audit.Row) error) error {
	if to <= 0 {
		to = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, prev_hash, hash, body, time, operation, caller, token_digests,
		mac, coalesce(mac_version, 0)
		FROM audit_events WHERE seq BETWEEN $1 AND $2 ORDER BY seq`, from, to)
	if err != nil {
		return classify("read audit events", err)
	}
	var r audit.Row
	var macVersion int32
	var fnErr error
	_, err = pgx.ForEachRow(rows, []any{&r.Seq, &r.PrevHash, &r.Hash, &r.Body, &r.Time, &r.Operation, &r.Caller, &r.TokenDigests, &r.MAC, &macVersion}, func() error {
		r.MACVersion = int(macVersion)
		fnErr = fn(r)
		r = audit.Row{}
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	return classify("read audit events", err)
}

// InsertCheckpoint stores a checkpoint.
func (s *Store) InsertCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO audit_checkpoints (seq, hash, time, signature) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, c.Seq, c.Hash, c.Time, c.Signature)
	return classify("insert audit checkpoint", err)
}

// Checkpoints returns the stored checkpoints with from ≤ seq ≤ to (to 0: no bound).
func (s *Store) Checkpoints(ctx context.Context, from, to int64) ([]audit.Checkpoint, error) {
	if to <= 0 {
		to = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, hash, time, signature FROM audit_checkpoints
		WHERE seq BETWEEN $1 AND $2 ORDER BY seq, time`, from, to)
	if err != nil {
		return nil, classify("read audit checkpoints", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Checkpoint, error) {
		var c audit.Checkpoint
		err := r.Scan(&c.Seq, &c.Hash, &c.Time, &c.Signature)
		return c, err
	})
	return out, classify("read audit checkpoints", err)
}

// LastCheckpointSeq returns the highest checkpointed seq, 0 when none.
func (s *Store) LastCheckpointSeq(ctx context.Context) (int64, error) {
	var seq *int64
	err := s.pool.QueryRow(ctx, "SELECT max(seq) FROM audit_checkpoints").Scan(&seq)
	if err != nil || seq == nil {
		return 0, classify("read audit checkpoints", err)
	}
	return *seq, nil
}

// Disclosures returns the events whose token digests include any of digests, oldest
// first, optionally bounded in time.
func (s *Store) Disclosures(ctx context.Context, digests [][]byte, start, end time.Time) ([]audit.Row, error) {
	if end.IsZero() {
		end = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, prev_hash, hash, body, time, operation, caller, token_digests
		FROM audit_events WHERE token_digests && $1::bytea[] AND time >= $2 AND time < $3 ORDER BY seq`, digests, start, end)
	if err != nil {
		return nil, classify("read disclosures", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Row, error) {
		var a audit.Row
		err := r.Scan(&a.Seq, &a.PrevHash, &a.Hash, &a.Body, &a.Time, &a.Operation, &a.Caller, &a.TokenDigests)
		return a, err
	})
	return out, classify("read disclosures", err)
}
