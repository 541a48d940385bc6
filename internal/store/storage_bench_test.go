package store_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// BenchmarkAuditStorage measures the bytes on disk per detokenize event of 100 token
// digests, as stored today (v1: hex digests in the body, and the bytea[] column with
// its GIN index) and with two alternative bodies, to weigh a compact encoding. Each
// iteration appends 100 events; run 100 iterations for 10,000 events:
//
//	go test ./internal/store -run '^$' -bench AuditStorage -benchtime 100x
func BenchmarkAuditStorage(b *testing.B) {
	variants := map[string]func(body string, digests [][]byte) string{
		"v1-hex":    func(body string, _ [][]byte) string { return body },
		"base64url": func(body string, digests [][]byte) string { return replaceDigests(body, digests, b64) },
		"sha256-of-digests": func(body string, digests [][]byte) string {
			h := sha256.New()
			for _, d := range digests {
				h.Write(d)
			}
			return strings.Replace(body, digestsJSON(digests, hex.EncodeToString), `"`+hex.EncodeToString(h.Sum(nil))+`"`, 1)
		},
	}
	for _, name := range []string{"v1-hex", "base64url", "sha256-of-digests"} {
		b.Run(name, func(b *testing.B) { benchStorage(b, variants[name]) })
	}
}

func b64(d []byte) string { return base64.RawURLEncoding.EncodeToString(d) }

func digestsJSON(digests [][]byte, enc func([]byte) string) string {
	parts := make([]string, len(digests))
	for i, d := range digests {
		parts[i] = `"` + enc(d) + `"`
	}
	return `[` + strings.Join(parts, ",") + `]`
}

func replaceDigests(body string, digests [][]byte, enc func([]byte) string) string {
	return strings.Replace(body, digestsJSON(digests, hex.EncodeToString), digestsJSON(digests, enc), 1)
}

func benchStorage(b *testing.B, encode func(string, [][]byte) string) {
	db := pgtest.NewDatabase(b)
	st, err := store.Open(b.Context(), db, store.Options{MaxConns: 4})
	require.NoError(b, err)
	defer st.Close()
	_, err = st.Migrate(b.Context())
	require.NoError(b, err)
	events := 0
	b.ResetTimer()
	for range b.N {
		require.NoError(b, st.AppendAudit(b.Context(), func(seq int64, prev []byte) ([]audit.Row, error) {
			return detokenizeRows(seq, prev, 100, encode), nil
		}))
		events += 100
	}
	b.StopTimer()
	pgtest.Exec(b, db, "VACUUM ANALYZE audit_events")
	sizes := relationSizes(b, db)
	for _, k := range []string{"heap", "toast", "pkey", "gin", "total"} {
		b.ReportMetric(float64(sizes[k])/float64(events), k+"-B/event")
	}
}

// detokenizeRows are n detokenize events of 100 random digests each, chained on seq.
func detokenizeRows(seq int64, prev []byte, n int, encode func(string, [][]byte) string) []audit.Row {
	if seq == 0 {
		prev = audit.GenesisHash
	}
	rows := make([]audit.Row, n)
	for i := range rows {
		digests := make([][]byte, 100)
		for j := range digests {
			digests[j] = make([]byte, 32)
			_, _ = rand.Read(digests[j])
		}
		ev := audit.Event{Seq: seq + int64(i) + 1, Time: time.Now().UTC().Truncate(time.Microsecond),
			RequestID: fmt.Sprintf("01J%023d", seq+int64(i)), Caller: "spiffe://example.org/ehr-export",
			Operation: "detokenize", Classes: []string{"mrn", "ssn"}, Items: 100, Outcome: "OK",
			PurposeOfUse: "TREAT", ClientAddress: "10.0.0.7:52144", TokenDigests: digests}
		body := encode(string(ev.Canonical()), digests)
		h := audit.Hash(prev, []byte(body))
		rows[i] = audit.Row{Seq: ev.Seq, PrevHash: prev, Hash: h, Body: body, Time: ev.Time, Operation: ev.Operation,
			Caller: ev.Caller, TokenDigests: digests, MAC: make([]byte, 32), MACVersion: 1}
		prev = h
	}
	return rows
}

// relationSizes sums, over the partitions of audit_events, the heap, its TOAST table,
// the primary key and the GIN index, in bytes.
func relationSizes(b *testing.B, db string) map[string]int64 {
	conn, err := pgx.Connect(b.Context(), db)
	require.NoError(b, err)
	defer conn.Close(b.Context())
	out := map[string]int64{}
	queries := map[string]string{
		"heap": `SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('audit_events') WHERE isleaf`,
		"toast": `SELECT coalesce(sum(pg_total_relation_size(c.reltoastrelid)), 0) FROM pg_partition_tree('audit_events') t
			JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf AND c.reltoastrelid <> 0`,
		"pkey":  `SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('audit_events_pkey') WHERE isleaf`,
		"gin":   `SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('audit_events_token_digests') WHERE isleaf`,
		"total": `SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('audit_events') WHERE isleaf`,
	}
	for k, q := range queries {
		var n int64
		require.NoError(b, conn.QueryRow(b.Context(), q).Scan(&n))
		out[k] = n
	}
	return out
}
