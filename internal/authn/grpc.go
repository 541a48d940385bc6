package authn

import (
	"context"
	"crypto/tls"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
)

// IdentityHeader carries the REST caller's verified identity from the gateway to the
// in-memory gRPC server. Only that server reads it, and the gateway refuses it from
// clients.
const IdentityHeader = "x-tokenizer-client-identity"

// Identity is the caller of a gRPC call: in insecure mode the dev identity; on the
// gateway's in-memory server (internal) the identity the gateway verified; otherwise
// the verified client certificate's. A call without one is UNAUTHENTICATED.
func Identity(ctx context.Context, insecure, internal bool) (string, error) {
	switch {
	case insecure:
		return policy.DevIdentity, nil
	case internal:
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(IdentityHeader); len(v) == 1 && v[0] != "" {
				return v[0], nil
			}
		}
		return "", errs.New(errs.Unauthenticated, "a client certificate is required")
	}
	var st *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			st = &ti.State
		}
	}
	id, err := IdentityOf(st)
	if err != nil {
		return "", errs.New(errs.Unauthenticated, "%s", err.Error())
	}
	return id, nil
}

// ClientAddress is the original client: the gateway forwards it in x-forwarded-for,
// whose last element is the address the gateway itself saw (earlier ones are whatever
// the client claimed). It trusts the header from anyone: the server uses
// ClientAddressFrom, which trusts it only from the gateway or configured proxies.
func ClientAddress(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-forwarded-for"); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			if a := strings.TrimSpace(parts[len(parts)-1]); a != "" && len(a) <= 64 {
				return a
			}
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
