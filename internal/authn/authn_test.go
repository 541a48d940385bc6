package authn_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/phivault/tokenizer/internal/authn"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// verified is the connection state of a client that presented leaf, issued by ca.
func verified(t *testing.T, ca *pkitest.CA, leaf pkitest.Leaf) *tls.ConnectionState {
	t.Helper()
	cert, err := x509.ParseCertificate(leaf.TLS.Certificate[0])
	require.NoError(t, err)
	return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert, ca.Cert}}}
}

func TestIdentityOf(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, "test CA")
	tests := []struct {
		name    string
		state   func() *tls.ConnectionState
		want    string
		wantErr string
	}{
		{name: "SPIFFE preferred to CN", want: "spiffe://example.org/ns/billing",
			state: func() *tls.ConnectionState {
				return verified(t, ca, ca.Issue(t, pkitest.Options{CN: "billing", SPIFFE: "spiffe://example.org/ns/billing"}))
			}},
		{name: "SPIFFE only", want: "spiffe://example.org/a",
			state: func() *tls.ConnectionState {
				return verified(t, ca, ca.Issue(t, pkitest.Options{SPIFFE: "spiffe://example.org/a"}))
			}},
		{name: "non-SPIFFE URI falls back to CN", want: "portal",
			state: func() *tls.ConnectionState {
				return verified(t, ca, ca.Issue(t, pkitest.Options{CN: "portal", SPIFFE: "https://example.org/portal"}))
			}},
		{name: "CN only", want: "portal",
			state: func() *tls.ConnectionState { return verified(t, ca, ca.Issue(t, pkitest.Options{CN: "portal"})) }},
		{name: "neither", wantErr: "neither a SPIFFE ID nor a common name",
			state: func() *tls.ConnectionState { return verified(t, ca, ca.Issue(t, pkitest.Options{})) }},
		{name: "no state", wantErr: "a client certificate is required",
			state: func() *tls.ConnectionState { return nil }},
		{name: "no verified chain", wantErr: "a client certificate is required",
			state: func() *tls.ConnectionState {
				leaf := ca.Issue(t, pkitest.Options{CN: "unverified"})
				cert, err := x509.ParseCertificate(leaf.TLS.Certificate[0])
				require.NoError(t, err)
				return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
			}},
		{name: "empty verified chain", wantErr: "a client certificate is required",
			state: func() *tls.ConnectionState { return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, err := authn.IdentityOf(tc.state())
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.Empty(t, id)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, id)
		})
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, "test CA")
	st := verified(t, ca, ca.Issue(t, pkitest.Options{CN: "cn", SPIFFE: "spiffe://example.org/svc"}))
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}
	withPeer := func(ctx context.Context, auth credentials.AuthInfo) context.Context {
		return peer.NewContext(ctx, &peer.Peer{Addr: addr, AuthInfo: auth})
	}
	withHeader := func(v ...string) context.Context {
		md := metadata.MD{}
		for _, x := range v {
			md.Append(authn.IdentityHeader, x)
		}
		return metadata.NewIncomingContext(context.Background(), md)
	}
	tests := []struct {
		name               string
		ctx                context.Context
		insecure, internal bool
		want               string
		wantErr            string
	}{
		{name: "insecure is dev", ctx: context.Background(), insecure: true, want: policy.DevIdentity},
		{name: "insecure ignores the certificate", ctx: withPeer(context.Background(), credentials.TLSInfo{State: *st}),
			insecure: true, want: policy.DevIdentity},
		{name: "internal with header", ctx: withHeader("spiffe://example.org/rest"), internal: true, want: "spiffe://example.org/rest"},
		{name: "internal without header", ctx: context.Background(), internal: true, wantErr: "a client certificate is required"},
		{name: "internal with empty header", ctx: withHeader(""), internal: true, wantErr: "a client certificate is required"},
		{name: "internal with two headers", ctx: withHeader("a", "b"), internal: true, wantErr: "a client certificate is required"},
		{name: "internal ignores the peer", ctx: withPeer(context.Background(), credentials.TLSInfo{State: *st}), internal: true,
			wantErr: "a client certificate is required"},
		{name: "peer with TLS", ctx: withPeer(context.Background(), credentials.TLSInfo{State: *st}), want: "spiffe://example.org/svc"},
		{name: "external ignores the header", ctx: withPeer(withHeader("spiffe://forged"), credentials.TLSInfo{State: *st}),
			want: "spiffe://example.org/svc"},
		{name: "header alone is not trusted outside internal", ctx: withHeader("spiffe://forged"),
			wantErr: "a client certificate is required"},
		{name: "peer without TLS", ctx: withPeer(context.Background(), nil), wantErr: "a client certificate is required"},
		{name: "peer with unverified TLS", ctx: withPeer(context.Background(), credentials.TLSInfo{}),
			wantErr: "a client certificate is required"},
		{name: "no peer", ctx: context.Background(), wantErr: "a client certificate is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, err := authn.Identity(tc.ctx, tc.insecure, tc.internal)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Equal(t, errs.Unauthenticated, errs.KindOf(err))
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.Empty(t, id)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, id)
		})
	}
}

func TestClientAddress(t *testing.T) {
	t.Parallel()
	addr := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4444}
	withPeer := func(ctx context.Context) context.Context { return peer.NewContext(ctx, &peer.Peer{Addr: addr}) }
	xff := func(v ...string) context.Context {
		md := metadata.MD{}
		for _, x := range v {
			md.Append("x-forwarded-for", x)
		}
		return metadata.NewIncomingContext(context.Background(), md)
	}
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"peer only", withPeer(context.Background()), "10.1.2.3:4444"},
		{"nothing", context.Background(), ""},
		{"single forwarded", withPeer(xff("192.0.2.7")), "192.0.2.7"},
		{"last element wins", withPeer(xff("6.6.6.6, 192.0.2.7")), "192.0.2.7"},
		{"last header wins", withPeer(xff("6.6.6.6", "198.51.100.1 ,  192.0.2.9 ")), "192.0.2.9"},
		{"empty last element falls back to peer", withPeer(xff("192.0.2.7, ")), "10.1.2.3:4444"},
		{"64 characters accepted", xff(strings.Repeat("a", 64)), strings.Repeat("a", 64)},
		{"over 64 characters falls back to peer", withPeer(xff(strings.Repeat("a", 65))), "10.1.2.3:4444"},
		{"over 64 without peer", xff(strings.Repeat("a", 65)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, authn.ClientAddress(tc.ctx))
		})
	}
}

// certFiles writes a server certificate, its key and a CA bundle into dir.
func certFiles(t *testing.T, dir string, server pkitest.Leaf, clientCA *pkitest.CA) (string, string, string) {
	t.Helper()
	return pkitest.Write(t, dir, "server.crt", server.CertPEM),
		pkitest.Write(t, dir, "server.key", server.KeyPEM),
		pkitest.Write(t, dir, "ca.crt", clientCA.PEM)
}

func TestNewCertsErrors(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, "ca")
	srv := ca.Issue(t, pkitest.Options{CN: "server", Server: true})
	tests := []struct {
		name  string
		setup func(dir string) (string, string, string)
		want  string
	}{
		{"missing certificate", func(dir string) (string, string, string) {
			_, k, c := certFiles(t, dir, srv, ca)
			return filepath.Join(dir, "absent.crt"), k, c
		}, "tls.cert_file/tls.key_file"},
		{"key of another certificate", func(dir string) (string, string, string) {
			other := ca.Issue(t, pkitest.Options{CN: "other", Server: true})
			c, _, b := certFiles(t, dir, srv, ca)
			return c, pkitest.Write(t, dir, "other.key", other.KeyPEM), b
		}, "tls.cert_file/tls.key_file"},
		{"missing CA bundle", func(dir string) (string, string, string) {
			c, k, _ := certFiles(t, dir, srv, ca)
			return c, k, filepath.Join(dir, "absent-ca.crt")
		}, "tls.client_ca_file"},
		{"CA bundle without PEM", func(dir string) (string, string, string) {
			c, k, _ := certFiles(t, dir, srv, ca)
			return c, k, pkitest.Write(t, dir, "junk.crt", []byte("not a certificate"))
		}, "tls.client_ca_file: no PEM certificate in it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, k, b := tc.setup(t.TempDir())
			_, err := authn.NewCerts(c, k, b, quiet())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// served returns the certificate and CA pool a new handshake would get.
func served(t *testing.T, cfg *tls.Config) ([]byte, *x509.CertPool) {
	t.Helper()
	c, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
	require.NoError(t, err)
	require.Len(t, c.Certificates, 1)
	assert.Equal(t, tls.VerifyClientCertIfGiven, c.ClientAuth)
	return c.Certificates[0].Certificate[0], c.ClientCAs
}

func TestCertsReload(t *testing.T) {
	t.Parallel()
	ca1, ca2 := pkitest.NewCA(t, "ca one"), pkitest.NewCA(t, "ca two")
	srv1 := ca1.Issue(t, pkitest.Options{CN: "server one", Server: true})
	srv2 := ca1.Issue(t, pkitest.Options{CN: "server two", Server: true})
	srv3 := ca1.Issue(t, pkitest.Options{CN: "server three", Server: true})
	dir := t.TempDir()
	certFile, keyFile, caFile := certFiles(t, dir, srv1, ca1)
	certs, err := authn.NewCerts(certFile, keyFile, caFile, quiet())
	require.NoError(t, err)
	cfg := certs.Config("h2")
	assert.Equal(t, []string{"h2"}, cfg.NextProtos)

	der, pool := served(t, cfg)
	assert.Equal(t, srv1.TLS.Certificate[0], der)
	assert.True(t, pool.Equal(poolOf(ca1)))

	// A rotation: new certificate, key and CA bundle.
	certFiles(t, dir, srv2, ca2)
	require.Eventually(t, func() bool {
		der, pool := served(t, cfg)
		return string(der) == string(srv2.TLS.Certificate[0]) && pool.Equal(poolOf(ca2))
	}, 5*time.Second, 100*time.Millisecond)

	// A broken certificate keeps the previous pair, past the next check.
	pkitest.Write(t, dir, "server.crt", []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	time.Sleep(600 * time.Millisecond)
	for range 3 {
		der, pool := served(t, cfg)
		assert.Equal(t, srv2.TLS.Certificate[0], der, "a bad file keeps the old certificate")
		assert.True(t, pool.Equal(poolOf(ca2)))
	}

	// A CA bundle without a certificate keeps the previous pool too.
	certFiles(t, dir, srv3, ca1)
	pkitest.Write(t, dir, "ca.crt", []byte("empty\n"))
	time.Sleep(600 * time.Millisecond)
	der, pool = served(t, cfg)
	assert.Equal(t, srv2.TLS.Certificate[0], der)
	assert.True(t, pool.Equal(poolOf(ca2)))

	// Good files again are picked up.
	certFiles(t, dir, srv3, ca1)
	require.Eventually(t, func() bool {
		der, pool := served(t, cfg)
		return string(der) == string(srv3.TLS.Certificate[0]) && pool.Equal(poolOf(ca1))
	}, 5*time.Second, 100*time.Millisecond)
}

func poolOf(ca *pkitest.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// TestHandshakeIdentity checks IdentityOf on the state of a real mTLS handshake served
// with Certs.Config, and that a certificate from another CA fails the handshake.
func TestHandshakeIdentity(t *testing.T) {
	t.Parallel()
	ca, rogue := pkitest.NewCA(t, "ca"), pkitest.NewCA(t, "rogue")
	srv := ca.Issue(t, pkitest.Options{CN: "server", Server: true})
	c, k, b := certFiles(t, t.TempDir(), srv, ca)
	certs, err := authn.NewCerts(c, k, b, quiet())
	require.NoError(t, err)
	good := ca.Issue(t, pkitest.Options{CN: "cn", SPIFFE: "spiffe://example.org/client"})
	bad := rogue.Issue(t, pkitest.Options{CN: "intruder"})
	tests := []struct {
		name      string
		leaf      *pkitest.Leaf
		want      string
		wantErr   string
		handshake bool
	}{
		{name: "verified client", leaf: &good, want: "spiffe://example.org/client", handshake: true},
		{name: "no client certificate", leaf: nil, wantErr: "a client certificate is required", handshake: true},
		{name: "certificate from another CA", leaf: &bad, handshake: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, err := handshake(t, certs.Config(), pkitest.ClientConfig(ca, tc.leaf))
			if !tc.handshake {
				require.Error(t, err)
				assert.NotContains(t, err.Error(), "a client certificate is required", "the handshake itself fails")
				return
			}
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, id)
		})
	}
}

// handshake serves one TLS connection on a loopback port and returns the identity the
// server sees (or the handshake or identity error).
func handshake(t *testing.T, server, client *tls.Config) (string, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	require.NoError(t, err)
	defer ln.Close()
	type result struct {
		id  string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			ch <- result{err: err}
			return
		}
		st := tc.ConnectionState()
		id, err := authn.IdentityOf(&st)
		ch <- result{id, err}
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
	if err == nil {
		// TLS 1.3 reports a rejected client certificate on the first read.
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Read(make([]byte, 1))
		conn.Close()
	}
	r := <-ch
	return r.id, r.err
}
