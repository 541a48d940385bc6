package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Options tune the connection pool.
type Options struct {
	MaxConns int32
	// ConnectTimeout bounds each new connection, so an unreachable database fails fast.
	ConnectTimeout time.Duration
	// StatementTimeout, when positive, is PostgreSQL's statement_timeout for the pool.
	StatementTimeout time.Duration
}

// Store is the token vault.
type Store struct {
	pool *pgxpool.Pool
	// auditMonths are the months (monthIndex) whose audit partitions this process has
	// seen to exist: appends to them need no check.
	monthsMu    sync.Mutex
	auditMonths map[int64]bool
	// lastMonth is the partition month of the newest event this process appended.
	lastMonth time.Time
	// head is the chain head this process last appended (seq 0: unknown); the next
	// append assumes it and checks it in the same statement (AppendAudit).
	head auditHead
	// headAppends counts the appends made in one round trip on the assumed head.
	headAppends atomic.Int64
}

// Open connects a pool to dsn. It does not wait for the database: the first query does.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", redactErr(err))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	// A frozen link must not hold a request past its deadline (pgx gives up on the
	// context; these bound what the context does not: dials, idle connections, and
	// statements the server runs on after the client left).
	cfg.ConnConfig.DialFunc = dialer(cfg.ConnConfig.ConnectTimeout).DialContext
	if opts.StatementTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	}
	cfg.HealthCheckPeriod = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, classify("connect", err)
	}
	return &Store{pool: pool}, nil
}

// redactErr drops a parse error's text, which can include the DSN and its password.
func redactErr(error) error { return errors.New("invalid database URL") }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return classify("ping", s.pool.Ping(ctx))
}

// EnsureDatabase creates the database named in dsn if it does not exist, connecting to
// the server's "postgres" database to do so. It is for development (`serve --dev`).
func EnsureDatabase(ctx context.Context, dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("ensure database: the database URL must be postgres://...")
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return classify("connect to create database", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return classify("look up database", err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created concurrently
		return nil
	}
	return classify("create database", err)
}

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and _", e.Name())
		}
		body, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// LatestVersion is the newest migration embedded in this binary.
func LatestVersion() int {
	ms, _ := migrations()
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

const migrationLock = 7_453_219_001 // pg_advisory_lock key: one migrator at a time

// Migrate applies every embedded migration not yet applied, each in its own
// transaction, holding an advisory lock so that replicas starting together do not race.
// It returns the versions applied.
func (s *Store) Migrate(ctx context.Context) ([]int, error) {
	return s.migrateTo(ctx, 0)
}

// migrateTo is Migrate up to version upTo (0: every one), for tests of a migration
// over data written before it.
func (s *Store) migrateTo(ctx context.Context, upTo int) ([]int, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	if upTo > 0 {
		ms = slices.DeleteFunc(ms, func(m migration) bool { return m.version > upTo })
	}
	// Nothing to do (the usual case at start): no lock, no DDL, so that a service
	// role without CREATE rights can start in development mode too.
	if v, err := s.SchemaVersion(ctx); err == nil && v == ms[len(ms)-1].version {
		return nil, nil
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, classify("acquire connection", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return nil, classify("lock migrations", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock) //nolint:errcheck // released with the session anyway
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, classify("create schema_migrations", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, classify("read schema_migrations", err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, classify("read schema_migrations", err)
	}
	for _, v := range vs {
		applied[int(v)] = true
	}
	var done []int
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("migration %s: %w", m.name, classify("migrate", err))
		}
		done = append(done, m.version)
	}
	return done, nil
}

// SchemaVersion returns the newest applied migration, 0 when none.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v *int32
	err := s.pool.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return 0, nil
	}
	if err != nil {
		return 0, classify("read schema version", err)
	}
	if v == nil {
		return 0, nil
	}
	return int(*v), nil
}

// DataKeys implements keys.Store.
func (s *Store) DataKeys(ctx context.Context) ([]keys.WrappedKey, error) {
	rows, err := s.pool.Query(ctx, "SELECT purpose, version, provider, wrapped, created_at FROM data_keys ORDER BY purpose, version")
	if err != nil {
		return nil, classify("read data keys", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (keys.WrappedKey, error) {
		var k keys.WrappedKey
		var p string
		var v int32
		err := r.Scan(&p, &v, &k.Provider, &k.Wrapped, &k.CreatedAt)
		k.Purpose, k.Version = keys.Purpose(p), int(v)
		return k, err
	})
	return out, classify("read data keys", err)
}

// InsertDataKey implements keys.Store.
func (s *Store) InsertDataKey(ctx context.Context, k keys.WrappedKey) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO data_keys (purpose, version, provider, wrapped)
		VALUES ($1, $2, $3, $4) ON CONFLICT (purpose, version) DO NOTHING`,
		string(k.Purpose), k.Version, k.Provider, k.Wrapped)
	if err != nil {
		return false, classify("insert data key", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReplaceWrapped implements keys.Store: it swaps a key's wrapped form if it is still old.
func (s *Store) ReplaceWrapped(ctx context.Context, p keys.Purpose, version int, old, wrapped []byte) error {
	tag, err := s.pool.Exec(ctx, `UPDATE data_keys SET wrapped = $4 WHERE purpose = $1 AND version = $2 AND wrapped = $3`,
		string(p), version, old, wrapped)
	if err != nil {
		return classify("replace wrapped key", err)
	}
	if tag.RowsAffected() != 1 {
		return &Error{Op: "replace wrapped key", kind: errs.ErrConflict}
	}
	return nil
}

// The PostgreSQL store implements every storage interface the domain declares.
var (
	_ tokenizer.Store       = (*Store)(nil)
	_ tokenizer.Reencrypter = (*Store)(nil)
	_ audit.ChainStore      = (*Store)(nil)
	_ keys.Store            = (*Store)(nil)
)
