// Package authn authenticates callers: the server's TLS certificate and client CA
// bundle (reloaded from disk without restart), and the identity a verified client
// certificate carries.
package authn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Certs serves the server certificate and the client CA bundle, reloading them from
// disk when the files change (checked at most twice a second, on handshakes), so that
// rotation needs no restart. A file that fails to load keeps the previous one.
type Certs struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	pool      *x509.CertPool
	stamps    [3]stamp
	lastCheck time.Time
}

type stamp struct {
	mtime time.Time
	size  int64
}

func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{fi.ModTime(), fi.Size()}
}

// NewCerts loads the server certificate, its key and the client CA bundle.
func NewCerts(certFile, keyFile, caFile string, log *slog.Logger) (*Certs, error) {
	c := &Certs{certFile: certFile, keyFile: keyFile, caFile: caFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Certs) load() error {
	stamps := [3]stamp{stampOf(c.certFile), stampOf(c.keyFile), stampOf(c.caFile)}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	pem, err := os.ReadFile(c.caFile)
	if err != nil {
		return fmt.Errorf("tls.client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("tls.client_ca_file: no PEM certificate in it")
	}
	c.cert, c.pool, c.stamps = &cert, pool, stamps
	return nil
}

func (c *Certs) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.lastCheck) >= 500*time.Millisecond {
		c.lastCheck = time.Now()
		now := [3]stamp{stampOf(c.certFile), stampOf(c.keyFile), stampOf(c.caFile)}
		if now != c.stamps {
			if err := c.load(); err != nil {
				c.stamps = now // keep the old files until they change again
				c.log.Error("TLS certificate reload failed; keeping the previous ones", slog.String("error", err.Error()))
			} else {
				c.log.Info("TLS certificates reloaded")
			}
		}
	}
	return c.cert, c.pool
}

// Config is the TLS configuration of a listener: client certificates are verified
// against the CA bundle when given (a certificate from another CA, or an expired one,
// fails the handshake); a connection without one is refused per request with
// UNAUTHENTICATED, so that the caller learns why.
func (c *Certs) Config(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := c.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{*cert},
				ClientCAs:    pool,
				ClientAuth:   tls.VerifyClientCertIfGiven,
			}, nil
		},
	}
}

// IdentityOf is the caller identity of a verified TLS connection: the client
// certificate's SPIFFE URI SAN, or failing that its subject CN. A CN that looks like a
// URI (a scheme and a colon, e.g. "spiffe://…") is refused: only a URI SAN may carry a
// SPIFFE ID, so that a CN can never take the rights of a SPIFFE principal.
func IdentityOf(st *tls.ConnectionState) (string, error) {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", errors.New("a client certificate is required")
	}
	leaf := st.VerifiedChains[0][0]
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" {
			return u.String(), nil
		}
	}
	if cn := leaf.Subject.CommonName; cn != "" {
		if looksLikeURI(cn) {
			return "", errors.New("the client certificate's common name looks like a URI; a SPIFFE ID must be a URI SAN")
		}
		return cn, nil
	}
	return "", errors.New("the client certificate has neither a SPIFFE ID nor a common name")
}

// Expiry is the NotAfter of the certificate served now (reloaded ones included).
func (c *Certs) Expiry() (time.Time, bool) {
	cert, _ := c.current()
	if cert == nil || len(cert.Certificate) == 0 {
		return time.Time{}, false
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return time.Time{}, false
		}
	}
	return leaf.NotAfter, true
}
