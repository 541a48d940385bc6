package server_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
)

// BenchmarkAuditedRequests measures audited requests per second (single-item tokenize
// and detokenize over gRPC, 16 concurrent clients): with the audit chain and one
// instance, with two instances appending to one chain, and with a no-op audit sink, so
// that the cost of auditing shows in the same run.
//
//	go test -run '^$' -bench AuditedRequests -benchtime 5s ./internal/server/
func BenchmarkAuditedRequests(b *testing.B) {
	for _, tc := range []struct {
		name      string
		instances int
		noop      bool
	}{
		{"noop-sink/1-instance", 1, true},
		{"audit/1-instance", 1, false},
		{"audit/2-instances", 2, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b)
			var opts []app.Option
			if tc.noop {
				opts = append(opts, app.WithAuditSink(audit.Noop{}))
			}
			var srvs []*running
			for range tc.instances {
				srvs = append(srvs, e.start(b, true, opts...))
			}
			resp, err := srvs[0].tokenizer().Tokenize(b.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}})
			if err != nil {
				b.Fatal(err)
			}
			token := resp.Results[0].Token
			var n atomic.Int64
			b.SetParallelism(8) // 16 clients on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := n.Add(1)
				c := srvs[int(i)%len(srvs)].tokenizer()
				for pb.Next() {
					k := n.Add(1)
					var err error
					if k%2 == 0 {
						_, err = c.Tokenize(b.Context(), &tokenizerv1.TokenizeRequest{Items: []*tokenizerv1.TokenizeItem{{Class: "ssn_dynamic", Value: fmt.Sprintf("%03d-45-6789", 100+k%800)}}})
					} else {
						_, err = c.Detokenize(b.Context(), &tokenizerv1.DetokenizeRequest{PurposeOfUse: "TREAT", Items: []*tokenizerv1.DetokenizeItem{{Class: "ssn", Token: token}}})
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
			if !tc.noop {
				res := verify(b, e, nil)
				if !res.OK {
					b.Fatalf("chain does not verify: %s", res.Reason)
				}
			}
		})
	}
}
