package store

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phivault/tokenizer/internal/audit"
)

// monthIndex numbers months (year*12 + month-1, UTC), so that months compare as ints.
func monthIndex(t time.Time) int64 {
	t = t.UTC()
	return int64(t.Year())*12 + int64(t.Month()) - 1
}

// monthStart is the first instant (UTC) of the month numbered i.
func monthStart(i int64) time.Time {
	return time.Date(int(i/12), time.Month(i%12+1), 1, 0, 0, 0, 0, time.UTC)
}

// partitionMonths are the partition months of rows appended after a head stored under
// headMonth (zero: an empty chain): each row's event month, but never below the row
// before it, so that partition_month never decreases along the chain and every
// partition holds one contiguous run of seqs.
func partitionMonths(headMonth time.Time, rows []audit.Row) []time.Time {
	running := int64(-1)
	if !headMonth.IsZero() {
		running = monthIndex(headMonth)
	}
	out := make([]time.Time, len(rows))
	for i, r := range rows {
		running = max(running, monthIndex(r.Time))
		out[i] = monthStart(running)
	}
	return out
}

// ensurePartitions makes sure the partitions of months exist, and those of this month
// and the next (ahead, so that a month's first append seldom creates one), calling
// audit_events_ensure_partition once per month per process. A failure for a month the
// rows need fails the append; one for a month ahead is left to a later append. It
// returns the months ensured, for noteMonths once the transaction commits.
func (s *Store) ensurePartitions(ctx context.Context, tx execer, months []time.Time) ([]int64, error) {
	var done []int64
	for _, m := range months {
		if i := monthIndex(m); !s.knownMonth(i) && !slices.Contains(done, i) {
			if _, err := tx.Exec(ctx, "SELECT audit_events_ensure_partition($1)", m); err != nil {
				return nil, classify("create audit partition", err)
			}
			done = append(done, i)
		}
	}
	now := monthIndex(time.Now())
	for _, i := range []int64{now, now + 1} {
		if s.knownMonth(i) || slices.Contains(done, i) {
			continue
		}
		// A savepoint: a failure here leaves the append alone.
		if _, err := tx.Exec(ctx, "SAVEPOINT ensure_partition"); err != nil {
			return nil, classify("create audit partition", err)
		}
		if _, err := tx.Exec(ctx, "SELECT audit_events_ensure_partition($1)", monthStart(i)); err != nil {
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT ensure_partition"); err != nil {
				return nil, classify("create audit partition", err)
			}
			break
		}
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT ensure_partition"); err != nil {
			return nil, classify("create audit partition", err)
		}
		done = append(done, i)
	}
	return done, nil
}

// execer runs a statement: a transaction, or a connection inside one.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// minMonth is below every partition month.
var minMonth = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)

// headMonth is the partition month of the newest event this process appended, minMonth
// before the first.
func (s *Store) headMonth() time.Time {
	s.monthsMu.Lock()
	defer s.monthsMu.Unlock()
	if s.lastMonth.IsZero() {
		return minMonth
	}
	return s.lastMonth
}

func (s *Store) noteHeadMonth(m time.Time) {
	s.monthsMu.Lock()
	defer s.monthsMu.Unlock()
	if m.After(s.lastMonth) {
		s.lastMonth = m
	}
}

func (s *Store) knownMonth(i int64) bool {
	s.monthsMu.Lock()
	defer s.monthsMu.Unlock()
	return s.auditMonths[i]
}

// noteMonths records that the partitions of months exist (nil: forget every month, so
// that the next appends check again).
func (s *Store) noteMonths(months []int64) {
	s.monthsMu.Lock()
	defer s.monthsMu.Unlock()
	if months == nil || s.auditMonths == nil {
		s.auditMonths = map[int64]bool{}
	}
	for _, i := range months {
		s.auditMonths[i] = true
	}
}

// EnsureAuditPartitions creates the audit partitions of this month and the months
// ahead that are missing (the maintenance step `tokenizer audit partitions --ensure`)
// and returns the names of the partitions covering them.
func (s *Store) EnsureAuditPartitions(ctx context.Context, ahead int) ([]string, error) {
	now := monthIndex(time.Now())
	var names []string
	for i := now; i <= now+int64(ahead); i++ {
		var name *string
		if err := s.pool.QueryRow(ctx, "SELECT audit_events_ensure_partition($1)", monthStart(i)).Scan(&name); err != nil {
			return names, classify("create audit partition", err)
		}
		if name != nil {
			names = append(names, *name)
		}
	}
	return names, nil
}

// AuditPartition is one attached partition of the audit log: its months [From, To)
// (From zero: unbounded below) and the seqs it holds (0 and 0 when empty).
type AuditPartition struct {
	Name              string
	From, To          time.Time
	FirstSeq, LastSeq int64
}

var boundRE = regexp.MustCompile(`^FOR VALUES FROM \((MINVALUE|'(\d{4}-\d{2}-\d{2})')\) TO \('(\d{4}-\d{2}-\d{2})'\)$`)

// AuditPartitions lists the attached partitions of the audit log, oldest first.
func (s *Store) AuditPartitions(ctx context.Context) ([]AuditPartition, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass AND c.relkind = 'r'`)
	if err != nil {
		return nil, classify("list audit partitions", err)
	}
	type bound struct{ name, expr string }
	bs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (bound, error) {
		var b bound
		return b, r.Scan(&b.name, &b.expr)
	})
	if err != nil {
		return nil, classify("list audit partitions", err)
	}
	var out []AuditPartition
	for _, b := range bs {
		p, err := parseBound(b.name, b.expr)
		if err != nil {
			return nil, err
		}
		// Through the parent, pruned to the partition: the service role has rights on
		// audit_events only.
		q := `SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM audit_events
			WHERE partition_month >= $1 AND partition_month < $2`
		if err := s.pool.QueryRow(ctx, q, p.lower(), p.To).Scan(&p.FirstSeq, &p.LastSeq); err != nil {
			return nil, classify("read audit partition", err)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b AuditPartition) int { return a.To.Compare(b.To) })
	return out, nil
}

// AuditPartitionEvents counts the events in partition p (a full scan of it).
func (s *Store) AuditPartitionEvents(ctx context.Context, p AuditPartition) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM audit_events WHERE partition_month >= $1 AND partition_month < $2",
		p.lower(), p.To).Scan(&n)
	return n, classify("count audit partition", err)
}

// lower is the partition's lower bound for a query: From, or the earliest date.
func (p AuditPartition) lower() time.Time {
	if p.From.IsZero() {
		return minMonth
	}
	return p.From
}

func parseBound(name, expr string) (AuditPartition, error) {
	m := boundRE.FindStringSubmatch(expr)
	if m == nil {
		return AuditPartition{}, fmt.Errorf("audit partition %s: unexpected bound %q", name, expr)
	}
	p := AuditPartition{Name: name}
	if m[2] != "" {
		p.From, _ = time.Parse(time.DateOnly, m[2])
	}
	p.To, _ = time.Parse(time.DateOnly, m[3])
	return p, nil
}
