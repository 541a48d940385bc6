package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/credentials"
)

// X509Source supplies this workload's X.509 SVID and the trust bundles that server
// certificates are verified against. *workloadapi.X509Source implements it (and
// rotates both as the SPIFFE agent does); tests may use a fixed source.
type X509Source interface {
	x509svid.Source
	x509bundle.Source
}

// WithSPIFFE authenticates with src's X.509 SVID and accepts only a server whose SVID
// carries the SPIFFE ID server (e.g. spiffe://hospital.example/tokenizer). The
// certificate in use follows src, so rotations need no new client.
func WithSPIFFE(src X509Source, server spiffeid.ID) Option {
	return func(s *settings) error {
		if src == nil {
			return errors.New("client: WithSPIFFE: no X.509 source")
		}
		if server.IsZero() {
			return errors.New("client: WithSPIFFE: the server's SPIFFE ID is required")
		}
		cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(server))
		return s.setCreds("WithSPIFFE", credentials.NewTLS(cfg))
	}
}

// NewWorkloadX509Source connects to the SPIFFE Workload API at addr (e.g.
// "unix:///run/spire/sockets/agent.sock"; empty reads SPIFFE_ENDPOINT_SOCKET) and
// waits for the first SVID. Close it when the client is closed.
func NewWorkloadX509Source(ctx context.Context, addr string) (*workloadapi.X509Source, error) {
	var opts []workloadapi.X509SourceOption
	if addr != "" {
		opts = append(opts, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	}
	src, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: SPIFFE Workload API: %w", err)
	}
	return src, nil
}
