package pkitest_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/testutil/pkitest"
)

func parse(t *testing.T, l pkitest.Leaf) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(l.TLS.Certificate[0])
	require.NoError(t, err)
	return c
}

func TestIssue(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, "test CA")
	other := pkitest.NewCA(t, "other CA")
	expiry := time.Now().Add(time.Hour).Truncate(time.Second)
	cases := []struct {
		name  string
		opts  pkitest.Options
		usage x509.ExtKeyUsage
		check func(t *testing.T, c *x509.Certificate)
	}{
		{"client CN", pkitest.Options{CN: "billing"}, x509.ExtKeyUsageClientAuth, func(t *testing.T, c *x509.Certificate) {
			assert.Equal(t, "billing", c.Subject.CommonName)
			assert.Empty(t, c.URIs)
		}},
		{"client SPIFFE", pkitest.Options{CN: "x", SPIFFE: "spiffe://example.org/a"}, x509.ExtKeyUsageClientAuth, func(t *testing.T, c *x509.Certificate) {
			require.Len(t, c.URIs, 1)
			assert.Equal(t, "spiffe://example.org/a", c.URIs[0].String())
		}},
		{"server for loopback", pkitest.Options{CN: "srv", Server: true}, x509.ExtKeyUsageServerAuth, func(t *testing.T, c *x509.Certificate) {
			assert.NoError(t, c.VerifyHostname("127.0.0.1"))
			assert.NoError(t, c.VerifyHostname("localhost"))
		}},
		{"explicit expiry", pkitest.Options{CN: "e", NotAfter: expiry}, x509.ExtKeyUsageClientAuth, func(t *testing.T, c *x509.Certificate) {
			assert.True(t, c.NotAfter.Equal(expiry), c.NotAfter)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaf := ca.Issue(t, tc.opts)
			c := parse(t, leaf)
			pool := x509.NewCertPool()
			pool.AddCert(ca.Cert)
			_, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			assert.NoError(t, err, "verifies against its CA")
			otherPool := x509.NewCertPool()
			otherPool.AddCert(other.Cert)
			_, err = c.Verify(x509.VerifyOptions{Roots: otherPool, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			assert.Error(t, err, "does not verify against another CA")
			assert.Equal(t, 0, leaf.Serial.Cmp(c.SerialNumber))
			tc.check(t, c)
		})
	}
	t.Run("serials are unique", func(t *testing.T) {
		t.Parallel()
		a, b := ca.Issue(t, pkitest.Options{CN: "a"}), ca.Issue(t, pkitest.Options{CN: "a"})
		assert.NotEqual(t, 0, a.Serial.Cmp(b.Serial))
	})
}

func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := pkitest.Write(t, dir, "ca.pem", []byte("first"))
	p2 := pkitest.Write(t, dir, "ca.pem", []byte("second"))
	assert.Equal(t, p, p2)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "second", string(b))
	_, err = os.Stat(p + ".tmp")
	assert.True(t, os.IsNotExist(err), "no temporary file left")
}

// TestClientConfigHandshake runs a real mTLS handshake: the server requires a client
// certificate from ca and sees the client's CN.
func TestClientConfigHandshake(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, "test CA")
	srv := ca.Issue(t, pkitest.Options{CN: "srv", Server: true})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srv.TLS}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})
	require.NoError(t, err)
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				_, _ = io.WriteString(c, tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
			}()
		}
	}()
	cases := []struct {
		name    string
		leaf    *pkitest.Leaf
		wantCN  string
		wantErr bool
	}{
		{"with a client certificate", func() *pkitest.Leaf { l := ca.Issue(t, pkitest.Options{CN: "billing"}); return &l }(), "billing", false},
		{"without one the server refuses", nil, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &net.Dialer{Timeout: 5 * time.Second}
			b, err := func() ([]byte, error) {
				c, err := tls.DialWithDialer(d, "tcp", lis.Addr().String(), pkitest.ClientConfig(ca, tc.leaf))
				if err != nil {
					return nil, err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				return io.ReadAll(c)
			}()
			if tc.wantErr {
				// TLS 1.3 reports the refusal on the first read, or as an empty answer.
				assert.True(t, err != nil || len(b) == 0, "server answered %q", b)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantCN, string(b))
		})
	}
}
