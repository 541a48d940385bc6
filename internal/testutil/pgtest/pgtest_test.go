package pgtest_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// databaseExists asks the maintenance database whether name exists.
func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.ServerURL())
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n))
	return n == 1
}

func TestNewDatabase(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("usable", func(t *testing.T) {
		db := pgtest.NewDatabase(t)
		u, err := url.Parse(db)
		require.NoError(t, err)
		name = strings.TrimPrefix(u.Path, "/")
		assert.True(t, strings.HasPrefix(name, "tokenizer_test_"), name)
		assert.True(t, databaseExists(t, name))

		pgtest.Exec(t, db, "CREATE TABLE t (id int PRIMARY KEY, v text)")
		pgtest.Exec(t, db, "INSERT INTO t VALUES ($1, $2), ($3, $4)", 1, "a", 2, "b")
		assert.Equal(t, int64(2), pgtest.Count(t, db, "SELECT count(*) FROM t"))
		assert.Equal(t, int64(1), pgtest.Count(t, db, "SELECT count(*) FROM t WHERE v = $1", "b"))
		pgtest.Exec(t, db, `CREATE TABLE "Odd name" (x text)`)
		pgtest.Exec(t, db, `INSERT INTO "Odd name" VALUES ('needle-42')`)
		dump := pgtest.Dump(t, db)
		for _, want := range []string{"(1,a)", "(2,b)", "(needle-42)"} {
			assert.Contains(t, dump, want)
		}

		// A connection left open does not stop the drop at cleanup.
		conn, err := pgx.Connect(context.Background(), db)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
	})
	require.NotEmpty(t, name)
	assert.False(t, databaseExists(t, name), "dropped when the test ended")
	t.Run("fresh each time", func(t *testing.T) {
		a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
		assert.NotEqual(t, a, b)
		assert.Equal(t, int64(0), pgtest.Count(t, b, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
	})
}

// TestServerURL is not parallel: t.Setenv forbids it (and NewDatabase reads the variable).
func TestServerURL(t *testing.T) {
	cases := []struct{ name, env, want string }{
		{"default", "", pgtest.DefaultURL},
		{"from the environment", "postgres://someone@127.0.0.1:5432/postgres", "postgres://someone@127.0.0.1:5432/postgres"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TEST_DATABASE_URL", tc.env)
			assert.Equal(t, tc.want, pgtest.ServerURL())
		})
	}
}
