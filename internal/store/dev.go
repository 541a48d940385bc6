package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrDatabaseInUse means DropDatabase found other sessions on the database.
var ErrDatabaseInUse = errors.New("the database is in use by other sessions")

// DropDatabase drops the database named by dsn if it exists (development: `tokenizer
// dev reset`). It refuses the maintenance databases, and a database other sessions
// use (a running service): ErrDatabaseInUse.
func DropDatabase(ctx context.Context, dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("drop database: the database URL must be postgres://...")
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" || strings.HasPrefix(name, "template") {
		return fmt.Errorf("drop database: refusing to drop %q", name)
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return classify("connect to drop database", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use
		return fmt.Errorf("drop database %s: %w", name, ErrDatabaseInUse)
	}
	return classify("drop database", err)
}
