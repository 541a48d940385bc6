// Package vault is the HashiCorp Vault client of the service: Transit data keys
// (datakey/wrapped, decrypt, rewrap) and signatures (sign, verify), with token, AppRole
// or Kubernetes authentication and token renewal.
package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"

	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/errs"
)

// Config says where Vault is and how to log in; it is a setting of the service
// (keys.vault in the configuration).
type Config = config.VaultConfig

// ErrRejected is wrapped when Vault refuses a request (4xx): permission, bad input.
var ErrRejected = errors.New("vault rejected the request")

// ErrPermission is wrapped (with ErrRejected) when Vault answers 403.
var ErrPermission = errors.New("vault permission denied")

// Client talks to one Vault.
type Client struct {
	cfg Config
	api *api.Client
	log *slog.Logger

	mu       sync.Mutex
	loggedIn bool
	stop     context.CancelFunc
}

// New returns a client. It logs in lazily, on the first request, so that a service can
// start (not ready) while Vault is down.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ac := api.DefaultConfig()
	ac.Address = cfg.Address
	ac.Timeout = cfg.Timeout
	ac.MaxRetries = cfg.MaxRetries
	ac.MinRetryWait = 100 * time.Millisecond
	ac.MaxRetryWait = time.Second
	if cfg.CACert != "" {
		if err := ac.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("keys.vault.ca_cert: %w", err)
		}
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.ClearToken()
	return &Client{cfg: cfg, api: c, log: log}, nil
}

// Close stops token renewal.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stop != nil {
		c.stop()
	}
}

// classify maps a Vault client error to errs.ErrUnavailable or ErrRejected. The text kept
// is Vault's, which never holds our plaintext: we send it keys it wraps and hashes.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		// Vault 1.13 answers a wrong AppRole secret ID with HTTP 500 "invalid secret
		// id": a refused credential, not an outage.
		if (re.StatusCode >= 500 || re.StatusCode == http.StatusTooManyRequests) && !credentialRefused(re.Errors) {
			return fmt.Errorf("vault %s: HTTP %d: %w", op, re.StatusCode, errs.ErrUnavailable)
		}
		if re.StatusCode == http.StatusForbidden {
			return fmt.Errorf("vault %s: HTTP 403 %s: %w: %w", op, strings.Join(re.Errors, "; "), ErrPermission, ErrRejected)
		}
		return fmt.Errorf("vault %s: HTTP %d %s: %w", op, re.StatusCode, strings.Join(re.Errors, "; "), ErrRejected)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("vault %s: %w", op, err)
	}
	return fmt.Errorf("vault %s: %w (%s)", op, errs.ErrUnavailable, redact(err.Error()))
}

func credentialRefused(msgs []string) bool {
	for _, m := range msgs {
		m = strings.ToLower(m)
		if strings.Contains(m, "invalid secret id") || strings.Contains(m, "invalid role id") || strings.Contains(m, "permission denied") {
			return true
		}
	}
	return false
}

// redact keeps connection errors short and free of tokens.
func redact(s string) string {
	if i := strings.Index(s, "X-Vault-Token"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// ensureLogin logs in once, and again after the token lapses.
func (c *Client) ensureLogin(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loggedIn {
		return nil
	}
	secret, err := c.login(ctx)
	if err != nil {
		return err
	}
	c.loggedIn = true
	if secret != nil && secret.Auth != nil && (secret.Auth.Renewable || c.cfg.AuthMethod != "token") {
		wctx, cancel := context.WithCancel(context.Background())
		c.stop = cancel
		go c.watch(wctx, secret)
	}
	return nil
}

func (c *Client) login(ctx context.Context) (*api.Secret, error) {
	switch c.cfg.AuthMethod {
	case "token":
		c.api.SetToken(c.cfg.Token)
		s, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			c.api.ClearToken()
			return nil, classify("token lookup", err)
		}
		renewable, _ := s.TokenIsRenewable()
		ttl, _ := s.TokenTTL()
		return &api.Secret{Auth: &api.SecretAuth{ClientToken: c.cfg.Token, Renewable: renewable, LeaseDuration: int(ttl.Seconds())}}, nil
	case "approle":
		sid := &approle.SecretID{FromString: c.cfg.SecretID}
		if c.cfg.SecretIDFile != "" {
			sid = &approle.SecretID{FromFile: c.cfg.SecretIDFile}
		}
		opts := []approle.LoginOption{}
		if c.cfg.AuthMount != "" {
			opts = append(opts, approle.WithMountPath(c.cfg.AuthMount))
		}
		a, err := approle.NewAppRoleAuth(c.cfg.RoleID, sid, opts...)
		if err != nil {
			return nil, fmt.Errorf("vault approle: %w", err)
		}
		s, err := c.api.Auth().Login(ctx, a)
		if err != nil {
			return nil, classify("approle login", err)
		}
		return s, nil
	case "kubernetes":
		opts := []kubernetes.LoginOption{kubernetes.WithServiceAccountTokenPath(c.cfg.KubernetesTokenFile)}
		if c.cfg.AuthMount != "" {
			opts = append(opts, kubernetes.WithMountPath(c.cfg.AuthMount))
		}
		a, err := kubernetes.NewKubernetesAuth(c.cfg.KubernetesRole, opts...)
		if err != nil {
			return nil, fmt.Errorf("vault kubernetes auth: %w", err)
		}
		s, err := c.api.Auth().Login(ctx, a)
		if err != nil {
			return nil, classify("kubernetes login", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("vault: unknown auth method %q", c.cfg.AuthMethod)
}

// watch renews the token while Vault allows, and logs in again when it cannot be
// renewed any more (AppRole and Kubernetes); a plain token then stays as it is.
func (c *Client) watch(ctx context.Context, secret *api.Secret) {
	for {
		w, err := c.api.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
		if err != nil {
			c.log.Warn("vault token renewal unavailable", slog.String("error", err.Error()))
			return
		}
		go w.Start()
		select {
		case <-ctx.Done():
			w.Stop()
			return
		case err := <-w.DoneCh():
			w.Stop()
			if err != nil {
				c.log.Warn("vault token renewal stopped", slog.String("error", redact(err.Error())))
			}
		case <-w.RenewCh():
			c.log.Debug("vault token renewed")
			continue
		}
		if c.cfg.AuthMethod == "token" {
			return
		}
		for backoff := time.Second; ; backoff = min(backoff*2, 30*time.Second) {
			lctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
			s, err := c.login(lctx)
			cancel()
			if err == nil {
				secret = s
				c.log.Info("vault login renewed", slog.String("auth_method", c.cfg.AuthMethod))
				break
			}
			c.log.Warn("vault login failed; retrying", slog.String("error", err.Error()), slog.Duration("retry_in", backoff))
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
	}
}

func (c *Client) write(ctx context.Context, op, path string, data map[string]any) (*api.Secret, error) {
	if err := c.ensureLogin(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout*time.Duration(c.cfg.MaxRetries+1))
	defer cancel()
	s, err := c.api.Logical().WriteWithContext(ctx, path, data)
	var re *api.ResponseError
	if err != nil && errors.As(err, &re) && re.StatusCode == http.StatusForbidden && c.cfg.AuthMethod != "token" {
		// The token may have lapsed between renewals: log in again and retry once.
		c.mu.Lock()
		c.loggedIn = false
		if c.stop != nil {
			c.stop()
			c.stop = nil
		}
		c.mu.Unlock()
		if lerr := c.ensureLogin(ctx); lerr != nil {
			return nil, lerr
		}
		s, err = c.api.Logical().WriteWithContext(ctx, path, data)
	}
	if err != nil {
		return nil, classify(op, err)
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("vault %s: %w: %w", op, errEmpty, errs.ErrUnavailable)
	}
	return s, nil
}

// errEmpty is wrapped when Vault answers a write with no data.
var errEmpty = errors.New("empty response")

func (c *Client) transit(parts ...string) string {
	return c.cfg.TransitMount + "/" + strings.Join(parts, "/")
}

// DataKey creates a 256-bit data key with Transit datakey/wrapped: Vault returns only
// the key wrapped under the KEK. Unwrap it with Decrypt.
func (c *Client) DataKey(ctx context.Context) (wrapped string, err error) {
	s, err := c.write(ctx, "datakey", c.transit("datakey", "wrapped", c.cfg.KEKName), map[string]any{"bits": 256})
	if err != nil {
		return "", err
	}
	ct, _ := s.Data["ciphertext"].(string)
	if ct == "" {
		return "", fmt.Errorf("vault datakey: no ciphertext: %w", errs.ErrUnavailable)
	}
	return ct, nil
}

// Decrypt unwraps a data key (Transit decrypt).
func (c *Client) Decrypt(ctx context.Context, wrapped string) ([]byte, error) {
	s, err := c.write(ctx, "decrypt", c.transit("decrypt", c.cfg.KEKName), map[string]any{"ciphertext": wrapped})
	if err != nil {
		return nil, err
	}
	pt, _ := s.Data["plaintext"].(string)
	key, err := base64.StdEncoding.DecodeString(pt)
	if err != nil {
		return nil, fmt.Errorf("vault decrypt: plaintext is not base64: %w", ErrRejected)
	}
	return key, nil
}

// Rewrap re-encrypts a wrapped key under the KEK's newest version (Transit rewrap);
// the plaintext never leaves Vault.
func (c *Client) Rewrap(ctx context.Context, wrapped string) (string, error) {
	s, err := c.write(ctx, "rewrap", c.transit("rewrap", c.cfg.KEKName), map[string]any{"ciphertext": wrapped})
	if err != nil {
		return "", err
	}
	ct, _ := s.Data["ciphertext"].(string)
	if ct == "" {
		return "", fmt.Errorf("vault rewrap: no ciphertext: %w", errs.ErrUnavailable)
	}
	return ct, nil
}

// Sign signs message with the signing key (Transit sign; ed25519).
func (c *Client) Sign(ctx context.Context, message []byte) (string, error) {
	s, err := c.write(ctx, "sign", c.transit("sign", c.cfg.SigningKey), map[string]any{"input": base64.StdEncoding.EncodeToString(message)})
	if err != nil {
		return "", err
	}
	sig, _ := s.Data["signature"].(string)
	if sig == "" {
		return "", fmt.Errorf("vault sign: no signature: %w", errs.ErrUnavailable)
	}
	return sig, nil
}

// Verify checks a signature made by Sign.
func (c *Client) Verify(ctx context.Context, message []byte, signature string) (bool, error) {
	s, err := c.write(ctx, "verify", c.transit("verify", c.cfg.SigningKey), map[string]any{
		"input": base64.StdEncoding.EncodeToString(message), "signature": signature,
	})
	if err != nil {
		if errors.Is(err, ErrRejected) {
			return false, nil // a malformed signature is a bad one
		}
		return false, err
	}
	ok, _ := s.Data["valid"].(bool)
	return ok, nil
}

// Check reports whether Vault answers, is unsealed, and accepts our login.
func (c *Client) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	h, err := c.api.Sys().HealthWithContext(ctx)
	if err != nil {
		return classify("health", err)
	}
	if h.Sealed {
		return fmt.Errorf("vault is sealed: %w", errs.ErrUnavailable)
	}
	return c.ensureLogin(ctx)
}
