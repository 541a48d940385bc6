package store

import (
	"context"
	"encoding/hex"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/phivault/tokenizer/internal/store/cache"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// invalidationChannel is the NOTIFY channel of cache invalidations: every replica's
// cache listens on it (internal/store/cache).
const invalidationChannel = "tokenizer_cache"

// maxPayload keeps a NOTIFY payload under PostgreSQL's 8,000-byte limit.
const maxPayload = 7900

var _ cache.Feed = (*Store)(nil)

// publishDeleted tells every replica's cache that these rows are gone. A failure to
// notify is not a failure of the delete (the rows are gone): the caches' entry lifetime
// bounds how long a replica may still answer from one.
func (s *Store) publishDeleted(ctx context.Context, refs []tokenizer.Ref) {
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			_, _ = s.pool.Exec(ctx, "SELECT pg_notify($1, $2)", invalidationChannel, b.String())
			b.Reset()
		}
	}
	for _, r := range refs {
		item := r.Class + " " + hex.EncodeToString(r.Digest)
		if b.Len()+len(item)+1 > maxPayload {
			flush()
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item)
	}
	flush()
}

// PublishFlush tells every replica's cache to forget everything (re-encryption,
// subject erasure).
func (s *Store) PublishFlush(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, "SELECT pg_notify($1, 'flush')", invalidationChannel)
	return classify("publish cache flush", err)
}

// ListenInvalidations implements cache.Feed on a dedicated connection (LISTEN holds
// it), until ctx ends or the connection fails.
func (s *Store) ListenInvalidations(ctx context.Context, fn func(cache.Invalidation)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return classify("listen for cache invalidations", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+invalidationChannel); err != nil {
		return classify("listen for cache invalidations", err)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return classify("wait for cache invalidations", err)
		}
		fn(parseInvalidation(n.Payload))
	}
}

func parseInvalidation(payload string) cache.Invalidation {
	if payload == "flush" {
		return cache.Invalidation{Flush: true}
	}
	var inv cache.Invalidation
	for _, item := range strings.Split(payload, ",") {
		class, h, ok := strings.Cut(item, " ")
		d, err := hex.DecodeString(h)
		if !ok || err != nil {
			return cache.Invalidation{Flush: true} // unreadable: forget everything
		}
		inv.Refs = append(inv.Refs, tokenizer.Ref{Class: class, Digest: d})
	}
	return inv
}
