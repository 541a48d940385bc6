package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// DefaultMaxItems is the server's default limit of items per request
// (limits.max_items); a test keeps it equal to the server's default.
const DefaultMaxItems = 1000

// DefaultTimeout is the deadline of one call attempt when WithTimeout is not given.
const DefaultTimeout = 10 * time.Second

// Client calls one tokenizer service. It is safe for concurrent use.
type Client struct {
	conn     *grpc.ClientConn
	tok      tokenizerv1.TokenizerServiceClient
	audit    tokenizerv1.AuditServiceClient
	maxItems int
	timeout  time.Duration
	retry    RetryPolicy
}

// Option configures New.
type Option func(*settings) error

type settings struct {
	creds    credentials.TransportCredentials
	security string // which option chose the transport security, for error messages
	dial     []grpc.DialOption
	maxItems int
	timeout  time.Duration
	retry    RetryPolicy
}

// setCreds records the transport security; choosing two is an error.
func (s *settings) setCreds(name string, c credentials.TransportCredentials) error {
	if s.creds != nil {
		return fmt.Errorf("client: %s and %s both set the transport security; choose one", s.security, name)
	}
	s.creds, s.security = c, name
	return nil
}

// WithTLSFiles authenticates with the client certificate and key in certFile and
// keyFile (PEM) and trusts servers whose certificate chains to the CA bundle in caFile.
// The files are read once, when New is called.
func WithTLSFiles(certFile, keyFile, caFile string) Option {
	return func(s *settings) error {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("client: load client certificate %s: %w", certFile, err)
		}
		pemCA, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("client: read CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemCA) {
			return fmt.Errorf("client: CA bundle %s holds no PEM certificate", caFile)
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
		return s.setCreds("WithTLSFiles", credentials.NewTLS(cfg))
	}
}

// WithTLSConfig uses cfg as it is (for certificates held in memory or reloaded by the
// caller).
func WithTLSConfig(cfg *tls.Config) Option {
	return func(s *settings) error {
		if cfg == nil {
			return errors.New("client: WithTLSConfig: nil configuration")
		}
		return s.setCreds("WithTLSConfig", credentials.NewTLS(cfg))
	}
}

// WithInsecure talks plaintext, for a development server started with --insecure.
// Never use it where values are PHI.
func WithInsecure() Option {
	return func(s *settings) error { return s.setCreds("WithInsecure", insecure.NewCredentials()) }
}

// WithMaxItems sets how many items one request carries at most; it must not exceed
// the server's limits.max_items (default DefaultMaxItems).
func WithMaxItems(n int) Option {
	return func(s *settings) error {
		if n < 1 {
			return errors.New("client: WithMaxItems: must be at least 1")
		}
		s.maxItems = n
		return nil
	}
}

// WithTimeout sets the deadline of each call attempt; the context given to a method
// bounds the whole call, retries included.
func WithTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return errors.New("client: WithTimeout: must be positive")
		}
		s.timeout = d
		return nil
	}
}

// WithRetry replaces DefaultRetryPolicy.
func WithRetry(p RetryPolicy) Option {
	return func(s *settings) error {
		if p.MaxAttempts < 1 {
			return errors.New("client: WithRetry: MaxAttempts must be at least 1")
		}
		s.retry = p
		return nil
	}
}

// WithDialOptions adds gRPC dial options (interceptors, connect parameters, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) error {
		s.dial = append(s.dial, opts...)
		return nil
	}
}

// New returns a client of the service at target (host:port, or any gRPC target).
// Exactly one of WithTLSFiles, WithTLSConfig, WithSPIFFE or WithInsecure must be
// given. The connection is made lazily, on the first call.
func New(target string, opts ...Option) (*Client, error) {
	s := settings{maxItems: DefaultMaxItems, timeout: DefaultTimeout, retry: DefaultRetryPolicy}
	for _, o := range opts {
		if err := o(&s); err != nil {
			return nil, err
		}
	}
	if s.creds == nil {
		return nil, errors.New("client: no transport security chosen: give WithTLSFiles, WithTLSConfig, WithSPIFFE or (development only) WithInsecure")
	}
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(s.creds)}, s.dial...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Client{
		conn:     conn,
		tok:      tokenizerv1.NewTokenizerServiceClient(conn),
		audit:    tokenizerv1.NewAuditServiceClient(conn),
		maxItems: s.maxItems,
		timeout:  s.timeout,
		retry:    s.retry,
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// TokenizerService returns the generated client, for calls this package does not wrap.
func (c *Client) TokenizerService() tokenizerv1.TokenizerServiceClient { return c.tok }

// AuditService returns the generated client of the audit service.
func (c *Client) AuditService() tokenizerv1.AuditServiceClient { return c.audit }
