package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// TestContentionTwoProcesses is the contention re-run of issue 10 (finding 6): two
// service processes on one database, 16 clients each, tokenizing the same 200 SSNs in
// batches of 1, 20, 50 and 200 (every client its own random order), in three rounds with
// a new scope each (so every value is new again and the inserts contend). Zero failed
// requests or items, one token per value, one row per value.
func TestContentionTwoProcesses(t *testing.T) {
	t.Parallel()
	const clientsPerProcess, rounds = 16, 3
	sizes := []int{1, 20, 50, 200}
	db := pgtest.NewDatabase(t)
	keyFile := filepath.Join(t.TempDir(), "kek.hex")
	var clients []tokenizerv1.TokenizerServiceClient
	for range 2 {
		p := startProc(t, []string{"TOKENIZER_DATABASE_URL=" + db, "TOKENIZER_LOG_FORMAT=json", "TOKENIZER_KEYS_LOCAL_FILE=" + keyFile},
			"serve", "--dev", "--insecure", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
		require.Eventually(t, func() bool { return p.field("listening", "admin") != "" }, 30*time.Second, 20*time.Millisecond)
		waitReady(t, p.field("listening", "admin"))
		conn, err := grpc.NewClient(p.field("listening", "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		clients = append(clients, tokenizerv1.NewTokenizerServiceClient(conn))
	}
	ssns := make([]string, 200)
	for i := range ssns {
		ssns[i] = fmt.Sprintf("%03d-%02d-%04d", 100+i%7, 10+i%89, 1000+i)
	}
	var mu sync.Mutex
	tokens := map[string]map[string]bool{}
	failures := map[string]int{}
	perSize := map[int]int{}
	start := time.Now()
	for round := range rounds {
		scope := fmt.Sprintf("round-%d", round)
		var wg sync.WaitGroup
		for c := range 2 * clientsPerProcess {
			wg.Add(1)
			go func() {
				defer wg.Done()
				size := sizes[(c/2)%len(sizes)]
				order := rand.Perm(len(ssns))
				for lo := 0; lo < len(order); lo += size {
					req := &tokenizerv1.TokenizeRequest{}
					for _, k := range order[lo:min(lo+size, len(order))] {
						req.Items = append(req.Items, &tokenizerv1.TokenizeItem{Class: "ssn", Value: ssns[k], Scope: scope})
					}
					resp, err := clients[c%2].Tokenize(context.Background(), req)
					mu.Lock()
					perSize[size]++
					if err != nil {
						failures[status.Code(err).String()] += len(req.Items)
					}
					for i, r := range resp.GetResults() {
						if r.Error != nil {
							failures[codes.Code(r.Error.Code).String()]++
							continue
						}
						key := scope + "|" + req.Items[i].Value
						if tokens[key] == nil {
							tokens[key] = map[string]bool{}
						}
						tokens[key][r.Token] = true
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	t.Logf("2 processes × %d clients, %d rounds: requests per batch size %v in %s; failed items %v",
		clientsPerProcess, rounds, perSize, time.Since(start).Round(time.Millisecond), failures)
	assert.Empty(t, failures, "zero failed requests and items")
	assert.Len(t, tokens, rounds*len(ssns))
	for _, ts := range tokens {
		assert.Len(t, ts, 1, "one token per value")
	}
	assert.Equal(t, int64(rounds*len(ssns)), pgtest.Count(t, db, "SELECT count(*) FROM tokens WHERE class = 'ssn'"), "one row per value")
}
