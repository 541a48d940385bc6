package authn_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/phivault/tokenizer/internal/authn"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

// Issue 10, finding 4: x-forwarded-for is believed only from the in-process gateway
// or a configured proxy; on direct gRPC it is the caller's own claim.
func TestClientAddressTrustsForwardedOnlyFromTrustedPeers(t *testing.T) {
	t.Parallel()
	ctx := func(peerIP string) context.Context {
		c := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-forwarded-for", "203.0.113.9"))
		return peer.NewContext(c, &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(peerIP), Port: 5555}})
	}
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name     string
		ctx      context.Context
		internal bool
		trusted  []netip.Prefix
		want     string
	}{
		{"direct gRPC: the claim is ignored", ctx("192.0.2.1"), false, nil, "192.0.2.1:5555"},
		{"direct gRPC from an untrusted peer", ctx("192.0.2.1"), false, proxies, "192.0.2.1:5555"},
		{"a configured proxy", ctx("10.1.2.3"), false, proxies, "203.0.113.9"},
		{"the in-process gateway", ctx("127.0.0.1"), true, nil, "203.0.113.9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, authn.ClientAddressFrom(tc.ctx, tc.internal, tc.trusted))
		})
	}
}

// Issue 10, finding 5: a certificate whose CN looks like a URI (a SPIFFE ID) and has no
// URI SAN gets no identity; the same ID as a URI SAN does.
func TestCNCannotBeASPIFFEID(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, "test CA")
	for _, cn := range []string{"spiffe://hospital.example/ehr", "SPIFFE://hospital.example/ehr", "urn:x:ehr", "x://y"} {
		leaf := ca.Issue(t, pkitest.Options{CN: cn})
		_, err := authn.IdentityOf(verified(t, ca, leaf))
		require.Error(t, err, cn)
		assert.Contains(t, err.Error(), "looks like a URI")
	}
	leaf := ca.Issue(t, pkitest.Options{CN: "ehr", SPIFFE: "spiffe://hospital.example/ehr"})
	id, err := authn.IdentityOf(verified(t, ca, leaf))
	require.NoError(t, err)
	assert.Equal(t, "spiffe://hospital.example/ehr", id)
	leaf = ca.Issue(t, pkitest.Options{CN: "billing-batch"})
	id, err = authn.IdentityOf(verified(t, ca, leaf))
	require.NoError(t, err)
	assert.Equal(t, "billing-batch", id, "plain CNs still work")
}
