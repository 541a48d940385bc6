package bench

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// FloorName is the name of the database-floor workload.
const FloorName = "postgresql floor: insert rows with two random 16-byte keys"

// floor measures what PostgreSQL itself allows for new mappings: multi-row INSERTs of
// b rows into a table with two random 16-byte unique keys (the shape of a token-vault
// row's lookup keys, without its ciphertexts), each statement its own durable commit,
// r.Clients at once. A static tokenize of new values can at best approach it.
func (r *Runner) floor(ctx context.Context, b int) (Result, error) {
	table := fmt.Sprintf("tokenizer_bench_floor_%d", b)
	pool := r.Database
	drop := func(ctx context.Context) error {
		_, err := pool.Exec(ctx, "DROP TABLE IF EXISTS "+table)
		return err
	}
	if err := drop(ctx); err != nil {
		return Result{}, fmt.Errorf("database floor: %w", err)
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (k1 bytea PRIMARY KEY, k2 bytea NOT NULL UNIQUE)"); err != nil {
		return Result{}, fmt.Errorf("database floor: %w", err)
	}
	defer func() { _ = drop(context.WithoutCancel(ctx)) }()
	res, err := RunLoad(ctx, FloorName, b, r.Clients, r.Duration, func(ctx context.Context, _ int) (int, error) {
		k1, k2 := randomKeys(b), randomKeys(b)
		_, err := pool.Exec(ctx, "INSERT INTO "+table+" (k1, k2) SELECT * FROM unnest($1::bytea[], $2::bytea[])", k1, k2)
		return b, err
	})
	if err != nil {
		return Result{}, fmt.Errorf("database floor: %w", err)
	}
	return res, nil
}

func randomKeys(n int) [][]byte {
	buf := make([]byte, 16*n)
	_, _ = rand.Read(buf)
	out := make([][]byte, n)
	for i := range out {
		out[i] = buf[16*i : 16*(i+1)]
	}
	return out
}

// OpenFloorDatabase connects to the database the floor is measured on, with one
// connection per client.
func OpenFloorDatabase(ctx context.Context, url string, clients int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database floor: parse database URL: %w", err)
	}
	cfg.MaxConns = int32(max(clients, 1))
	return pgxpool.NewWithConfig(ctx, cfg)
}
