package cli

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// echoTokenizer answers tokenize with one token per item and detokenize with nothing;
// with deny set it refuses every call.
type echoTokenizer struct {
	tokenizerv1.UnimplementedTokenizerServiceServer
	deny  bool
	calls atomic.Int64
}

func (e *echoTokenizer) Tokenize(_ context.Context, req *tokenizerv1.TokenizeRequest) (*tokenizerv1.TokenizeResponse, error) {
	e.calls.Add(1)
	if e.deny {
		return nil, status.Error(codes.PermissionDenied, "denied")
	}
	resp := &tokenizerv1.TokenizeResponse{}
	for range req.Items {
		resp.Results = append(resp.Results, &tokenizerv1.TokenizeResult{Token: "t"})
	}
	return resp, nil
}

func (e *echoTokenizer) Detokenize(context.Context, *tokenizerv1.DetokenizeRequest) (*tokenizerv1.DetokenizeResponse, error) {
	e.calls.Add(1)
	return &tokenizerv1.DetokenizeResponse{}, nil
}

func startTokenizer(t *testing.T, svc *echoTokenizer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	tokenizerv1.RegisterTokenizerServiceServer(gs, svc)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func TestBenchCommand(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		deny       bool
		extra      []string
		wantCode   int
		wantStdout []string
		wantStderr string
	}{
		{"table without baseline", false, nil, exitOK,
			[]string{"workload", "tokenize ssn ", "tokenize ssn (seen values)", "detokenize ssn_dynamic"}, ""},
		{"service refusal fails with the workload", true, nil, exitFailure, nil,
			"tokenizer bench: tokenize ssn: rpc error: code = PermissionDenied desc = denied"},
		{"unknown flag", false, []string{"--nope"}, exitUsage, nil, "flag provided but not defined: -nope"},
		{"help", false, []string{"-h"}, exitOK, nil, "-batches"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := &echoTokenizer{deny: tc.deny}
			args := append([]string{"bench", "--grpc", startTokenizer(t, svc), "--duration", "300ms",
				"--clients", "1", "--batches", "2"}, tc.extra...)
			code, stdout, stderr := run(t, args...)
			assert.Equal(t, tc.wantCode, code, stderr)
			for _, s := range tc.wantStdout {
				assert.Contains(t, stdout, s)
			}
			assert.Contains(t, stderr, tc.wantStderr)
			if tc.wantCode == exitOK && len(tc.wantStdout) > 0 {
				assert.Positive(t, svc.calls.Load())
				assert.NotContains(t, stdout, "ratios")
				assert.Len(t, strings.Split(strings.TrimSpace(stdout), "\n"), 6, "header and five workloads")
			}
		})
	}
}
