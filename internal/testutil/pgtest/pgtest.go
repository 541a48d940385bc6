// Package pgtest gives tests a fresh database on the real PostgreSQL named by
// TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server tests use when TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL is the URL of the test server's maintenance database.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// NewDatabase creates an empty database and returns its URL; it is dropped (with any
// remaining connections) when the test ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		tb.Fatalf("pgtest: connect to the test PostgreSQL (%s): %v", ServerURL(), err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "tokenizer_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, ServerURL())
		if err != nil {
			tb.Errorf("pgtest: drop database: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database: %v", err)
		}
	})
	u, _ := url.Parse(ServerURL())
	u.Path = "/" + name
	return u.String()
}

// connect opens a connection for the duration of one helper call.
func connect(tb testing.TB, dbURL string) (context.Context, *pgx.Conn, func()) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		cancel()
		tb.Fatalf("pgtest: connect: %v", err)
	}
	return ctx, conn, func() { conn.Close(ctx); cancel() }
}

// Exec runs sql on the database at dbURL, as the test's superuser.
func Exec(tb testing.TB, dbURL, sql string, args ...any) {
	tb.Helper()
	ctx, conn, done := connect(tb, dbURL)
	defer done()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("pgtest: exec: %v", err)
	}
}

// Dump returns every row of every table in the public schema, as text, for searching.
func Dump(tb testing.TB, dbURL string) string {
	tb.Helper()
	ctx, conn, done := connect(tb, dbURL)
	defer done()
	rows, err := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
	if err != nil {
		tb.Fatalf("pgtest: list tables: %v", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("pgtest: list tables: %v", err)
	}
	var out []byte
	for _, t := range tables {
		var dump string
		err := conn.QueryRow(ctx, "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM "+pgx.Identifier{t}.Sanitize()+" t").Scan(&dump)
		if err != nil {
			tb.Fatalf("pgtest: dump %s: %v", t, err)
		}
		out = append(out, dump...)
		out = append(out, '\n')
	}
	return string(out)
}

// Count returns the single integer a query yields.
func Count(tb testing.TB, dbURL, query string, args ...any) int64 {
	tb.Helper()
	ctx, conn, done := connect(tb, dbURL)
	defer done()
	var n int64
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		tb.Fatalf("pgtest: count: %v", err)
	}
	return n
}
