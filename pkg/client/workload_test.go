package client_test

import (
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

// agent is a SPIFFE Workload API server, as a SPIRE agent serves it on a Unix socket,
// handing out one X.509 SVID issued by a test CA.
type agent struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	resp *workload.X509SVIDResponse
}

// FetchX509SVID sends the SVID and keeps the stream open, as an agent does for updates.
func (a *agent) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing")
	}
	if err := stream.Send(a.resp); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// startAgent serves the Workload API for id on a Unix socket and returns its address.
func startAgent(t *testing.T, ca *pkitest.CA, id string) string {
	t.Helper()
	leaf := ca.Issue(t, pkitest.Options{CN: "svid", SPIFFE: id})
	key, err := x509.MarshalPKCS8PrivateKey(leaf.TLS.PrivateKey)
	require.NoError(t, err)
	a := &agent{resp: &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId: id, X509Svid: leaf.TLS.Leaf.Raw, X509SvidKey: key, Bundle: ca.Cert.Raw,
	}}}}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	s := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(s, a)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return "unix://" + sock
}
