package vault_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/testutil/vaulttest"
	"github.com/phivault/tokenizer/internal/vault"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newClient returns a client of the dev server at addr, logging in with token.
func newClient(t *testing.T, addr string, mutate func(*vault.Config)) *vault.Client {
	t.Helper()
	cfg := vault.Config{Address: addr, Token: vaulttest.RootToken, Timeout: 2 * time.Second, MaxRetries: 1}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := vault.New(cfg, quiet)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// childToken creates a token with the given policies (as root).
func childToken(t *testing.T, v *vaulttest.Server, policies ...string) string {
	t.Helper()
	sec := v.Write(t, "auth/token/create", map[string]any{"policies": policies, "no_default_policy": false, "ttl": "1h"})
	require.NotNil(t, sec.Auth)
	return sec.Auth.ClientToken
}

// tokenCount is how many tokens the server holds.
func tokenCount(t *testing.T, v *vaulttest.Server) int {
	t.Helper()
	sec, err := v.Client.Logical().List("auth/token/accessors")
	require.NoError(t, err)
	require.NotNil(t, sec)
	keys, _ := sec.Data["keys"].([]any)
	return len(keys)
}

// TestTransit runs the client's Transit operations against one real dev server.
func TestTransit(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	v.ServicePolicy(t)
	c := newClient(t, v.Addr, nil)

	t.Run("data key round trip", func(t *testing.T) {
		ctx := t.Context()
		require.NoError(t, c.Check(ctx))
		w1, err := c.DataKey(ctx)
		require.NoError(t, err)
		w2, err := c.DataKey(ctx)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(w1, "vault:v1:"), "wrapped under KEK v1")
		assert.NotEqual(t, w1, w2)
		k1, err := c.Decrypt(ctx, w1)
		require.NoError(t, err)
		k2, err := c.Decrypt(ctx, w2)
		require.NoError(t, err)
		assert.Len(t, k1, 32, "256-bit data keys")
		assert.NotEqual(t, k1, k2)
		again, err := c.Decrypt(ctx, w1)
		require.NoError(t, err)
		assert.Equal(t, k1, again)
		assert.NotContains(t, w1, base64.StdEncoding.EncodeToString(k1), "the wrapped key does not hold the key")
	})

	t.Run("rejected inputs are not outages", func(t *testing.T) {
		ctx := t.Context()
		tests := []struct {
			name string
			call func() error
		}{
			{"decrypt garbage", func() error { _, err := c.Decrypt(ctx, "vault:v1:bm90LWEta2V5"); return err }},
			{"decrypt without prefix", func() error { _, err := c.Decrypt(ctx, "plain"); return err }},
			{"rewrap garbage", func() error { _, err := c.Rewrap(ctx, "vault:v1:AAAA"); return err }},
			{"decrypt a future KEK version", func() error { _, err := c.Decrypt(ctx, "vault:v9:AAAA"); return err }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := tt.call()
				require.Error(t, err)
				assert.ErrorIs(t, err, vault.ErrRejected)
				assert.NotErrorIs(t, err, errs.ErrUnavailable)
				assert.NotErrorIs(t, err, vault.ErrPermission)
			})
		}
	})

	t.Run("sign and verify", func(t *testing.T) {
		ctx := t.Context()
		msg := []byte("tokenizer audit checkpoint v1\nseq=1\n")
		sig, err := c.Sign(ctx, msg)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(sig, "vault:v1:"))
		tests := []struct {
			name string
			msg  []byte
			sig  string
			ok   bool
		}{
			{"its message", msg, sig, true},
			{"another message", []byte("tokenizer audit checkpoint v1\nseq=2\n"), sig, false},
			{"empty message", nil, sig, false},
			{"a signature altered", msg, sig[:len(sig)-4] + "AAA=", false},
			{"not a signature", msg, "garbage", false},
			{"an unknown key version", msg, strings.Replace(sig, "vault:v1:", "vault:v7:", 1), false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ok, err := c.Verify(ctx, tt.msg, tt.sig)
				require.NoError(t, err, "a bad signature is a verdict, not an error")
				assert.Equal(t, tt.ok, ok)
			})
		}
	})

	t.Run("rewrap after KEK rotation", func(t *testing.T) {
		ctx := t.Context()
		w, err := c.DataKey(ctx)
		require.NoError(t, err)
		key, err := c.Decrypt(ctx, w)
		require.NoError(t, err)
		v.RotateKEK(t)
		re, err := c.Rewrap(ctx, w)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(re, "vault:v2:"), "rewrapped under the newest KEK version")
		got, err := c.Decrypt(ctx, re)
		require.NoError(t, err)
		assert.Equal(t, key, got, "rewrap keeps the data key")
		fresh, err := c.DataKey(ctx)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(fresh, "vault:v2:"))
	})

	t.Run("other mounts and key names", func(t *testing.T) {
		ctx := t.Context()
		v.Write(t, "sys/mounts/transit2", map[string]any{"type": "transit"})
		v.Write(t, "transit2/keys/kek2", map[string]any{"type": "aes256-gcm96"})
		v.Write(t, "transit2/keys/sig2", map[string]any{"type": "ed25519"})
		c2 := newClient(t, v.Addr, func(cfg *vault.Config) { cfg.TransitMount, cfg.KEKName, cfg.SigningKey = "transit2", "kek2", "sig2" })
		w, err := c2.DataKey(ctx)
		require.NoError(t, err)
		_, err = c2.Decrypt(ctx, w)
		require.NoError(t, err)
		_, err = c.Decrypt(ctx, w)
		assert.ErrorIs(t, err, vault.ErrRejected, "another KEK cannot unwrap it")
		sig, err := c2.Sign(ctx, []byte("m"))
		require.NoError(t, err)
		ok, err := c.Verify(ctx, []byte("m"), sig)
		require.NoError(t, err)
		assert.False(t, ok, "another signing key does not verify it")
	})
}

// TestRefusedCredentials: a token Vault refuses is PERMISSION (rejected), never an
// outage, so the service reports a configuration problem instead of retrying.
func TestRefusedCredentials(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	v.ServicePolicy(t)
	ctx := t.Context()
	const bogus = "hvs.not-a-real-token-0000"

	tests := []struct {
		name  string
		token func(t *testing.T) string
		check bool // Check (login) itself refuses the token
	}{
		{"unknown token", func(*testing.T) string { return bogus }, true},
		{"token without the Transit policy", func(t *testing.T) string { return childToken(t, v, "default") }, false},
		{"revoked token", func(t *testing.T) string {
			tok := childToken(t, v, "tokenizer")
			v.Write(t, "auth/token/revoke", map[string]any{"token": tok})
			return tok
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token(t)
			c := newClient(t, v.Addr, func(cfg *vault.Config) { cfg.Token = tok })
			err := c.Check(ctx)
			if tt.check {
				require.Error(t, err)
				assertRefused(t, err, tok)
			} else {
				require.NoError(t, err, "the token itself is valid")
			}
			_, err = c.DataKey(ctx)
			require.Error(t, err)
			assertRefused(t, err, tok)
			_, err = c.Sign(ctx, []byte("m"))
			assertRefused(t, err, tok)
		})
	}

	t.Run("token revoked while in use", func(t *testing.T) {
		tok := childToken(t, v, "tokenizer")
		c := newClient(t, v.Addr, func(cfg *vault.Config) { cfg.Token = tok })
		_, err := c.DataKey(ctx)
		require.NoError(t, err)
		v.Write(t, "auth/token/revoke", map[string]any{"token": tok})
		_, err = c.DataKey(ctx)
		assertRefused(t, err, tok)
	})
}

func assertRefused(t *testing.T, err error, token string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, vault.ErrPermission)
	assert.ErrorIs(t, err, vault.ErrRejected)
	assert.NotErrorIs(t, err, errs.ErrUnavailable)
	assert.NotContains(t, err.Error(), token, "errors never carry the token")
}

// TestAppRole logs in with AppRole (secret ID in config or in a file, default or
// custom mount) and logs in again when its token is revoked.
func TestAppRole(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	roleID, secretID := v.AppRole(t, "1h")
	ctx := t.Context()
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(secretFile, []byte(secretID+"\n"), 0o600))

	// The same role under a second mount.
	v.Write(t, "sys/auth/ar2", map[string]any{"type": "approle"})
	v.Write(t, "auth/ar2/role/svc", map[string]any{"token_policies": "tokenizer", "token_ttl": "1h"})
	r2, err := v.Client.Logical().Read("auth/ar2/role/svc/role-id")
	require.NoError(t, err)
	s2 := v.Write(t, "auth/ar2/role/svc/secret-id", nil)

	tests := []struct {
		name    string
		cfg     func(*vault.Config)
		refused bool
	}{
		{"secret id", func(c *vault.Config) { c.RoleID, c.SecretID = roleID, secretID }, false},
		{"secret id file", func(c *vault.Config) { c.RoleID, c.SecretIDFile = roleID, secretFile }, false},
		{"custom mount", func(c *vault.Config) {
			c.RoleID, c.SecretID, c.AuthMount = r2.Data["role_id"].(string), s2.Data["secret_id"].(string), "ar2"
		}, false},
		{"wrong role id", func(c *vault.Config) { c.RoleID, c.SecretID = "00000000-0000-0000-0000-000000000000", secretID }, true},
		{"role of another mount", func(c *vault.Config) {
			c.RoleID, c.SecretID = r2.Data["role_id"].(string), s2.Data["secret_id"].(string)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, v.Addr, func(cfg *vault.Config) {
				cfg.AuthMethod, cfg.Token = "approle", ""
				tt.cfg(cfg)
			})
			_, err := c.DataKey(ctx)
			if tt.refused {
				require.Error(t, err)
				assert.ErrorIs(t, err, vault.ErrRejected)
				assert.NotErrorIs(t, err, errs.ErrUnavailable, "a refused login is not an outage")
				assert.NotContains(t, err.Error(), secretID)
				return
			}
			require.NoError(t, err)
			require.NoError(t, c.Check(ctx))
		})
	}

	t.Run("logs in again when its token is revoked", func(t *testing.T) {
		c := newClient(t, v.Addr, func(cfg *vault.Config) {
			cfg.AuthMethod, cfg.Token, cfg.RoleID, cfg.SecretID = "approle", "", roleID, secretID
		})
		w, err := c.DataKey(ctx)
		require.NoError(t, err)
		// Revoke every token AppRole has issued, as an operator would.
		_, err = v.Client.Logical().Write("sys/leases/revoke-prefix/auth/approle/login", nil)
		require.NoError(t, err)
		revoked := tokenCount(t, v)
		_, err = c.Decrypt(ctx, w)
		require.NoError(t, err, "a 403 makes the client log in again and retry once")
		assert.Equal(t, revoked+1, tokenCount(t, v), "one new login")
	})
}

// TestUnavailable: an unreachable, hanging, sealed or failing Vault is ErrUnavailable,
// so callers fail closed and retry later; a cancelled caller is neither.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("nothing listening", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := "http://" + l.Addr().String()
		require.NoError(t, l.Close())
		c := newClient(t, addr, func(cfg *vault.Config) { cfg.Timeout = 500 * time.Millisecond })
		assertUnavailable(t, c.Check(ctx))
		_, err = c.DataKey(ctx)
		assertUnavailable(t, err)
		assert.NotContains(t, err.Error(), vaulttest.RootToken)
	})

	t.Run("server that never answers", func(t *testing.T) {
		t.Parallel()
		hang := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(hang) })
		c := newClient(t, srv.URL, func(cfg *vault.Config) { cfg.Timeout = 200 * time.Millisecond })
		bounded, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := c.DataKey(bounded)
		assertUnavailable(t, err)
		assert.NoError(t, bounded.Err(), "the client's own timeout ended the request, not the test's")
	})

	t.Run("cancelled caller", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
		t.Cleanup(srv.Close)
		c := newClient(t, srv.URL, nil)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := c.DataKey(cctx)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, errs.ErrUnavailable, "the caller gave up; Vault is not down")
	})

	t.Run("sealed", func(t *testing.T) {
		t.Parallel()
		v := vaulttest.Start(t)
		c := newClient(t, v.Addr, nil)
		w, err := c.DataKey(ctx)
		require.NoError(t, err)
		require.NoError(t, v.Client.Sys().Seal())
		err = c.Check(ctx)
		assertUnavailable(t, err)
		assert.Contains(t, err.Error(), "sealed")
		_, err = c.Decrypt(ctx, w)
		assertUnavailable(t, err)
	})
}

// TestServerErrorClassification answers like a failing Vault would (a stand-in: a real
// dev server does not fail on demand) and checks the client's mapping of each status.
func TestServerErrorClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		errors      string
		unavailable bool
		permission  bool
	}{
		{"500 internal error", 500, "internal error", true, false},
		{"502 bad gateway", 502, "upstream", true, false},
		{"503 standby", 503, "Vault is sealed", true, false},
		{"429 rate limited", 429, "request path rate limited", true, false},
		{"500 invalid secret id is a refusal", 500, "invalid secret id", false, false},
		{"500 permission denied is a refusal", 500, "permission denied", false, false},
		{"400 bad input", 400, "invalid ciphertext", false, false},
		{"404 no such key", 404, "no handler for route", false, false},
		{"403 forbidden", 403, "permission denied", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if r.URL.Path == "/v1/auth/token/lookup-self" {
					_, _ = io.WriteString(w, `{"data":{"ttl":0,"renewable":false}}`)
					return
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, `{"errors":["`+tt.errors+`"]}`)
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, srv.URL, func(cfg *vault.Config) { cfg.Timeout = 5 * time.Second })
			_, err := c.DataKey(t.Context())
			require.Error(t, err)
			assert.Equal(t, tt.unavailable, errors.Is(err, errs.ErrUnavailable), "unavailable: %v", err)
			assert.Equal(t, !tt.unavailable, errors.Is(err, vault.ErrRejected), "rejected: %v", err)
			assert.Equal(t, tt.permission, errors.Is(err, vault.ErrPermission), "permission: %v", err)
		})
	}
}

// TestEmptyAnswers: a 2xx answer without the expected data is not trusted.
func TestEmptyAnswers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/auth/token/lookup-self":
			_, _ = io.WriteString(w, `{"data":{"ttl":0}}`)
		case strings.HasPrefix(r.URL.Path, "/v1/transit/decrypt/"):
			_, _ = io.WriteString(w, `{"data":{"plaintext":"%%% not base64"}}`)
		case strings.HasPrefix(r.URL.Path, "/v1/transit/datakey/"):
			_, _ = io.WriteString(w, `{"data":{}}`)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, nil)
	ctx := t.Context()
	_, err := c.DataKey(ctx)
	assertUnavailable(t, err)
	_, err = c.Decrypt(ctx, "vault:v1:x")
	assert.ErrorIs(t, err, vault.ErrRejected)
	_, err = c.Rewrap(ctx, "vault:v1:x")
	assertUnavailable(t, err)
	_, err = c.Sign(ctx, []byte("m"))
	assertUnavailable(t, err)
}

func assertUnavailable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, errs.ErrUnavailable)
	assert.NotErrorIs(t, err, vault.ErrRejected)
	assert.False(t, bytes.Contains([]byte(err.Error()), []byte("X-Vault-Token")), "no headers in errors")
}

// TestTokenRenewal: a renewable token with a short TTL is renewed in the background,
// so requests keep working well past its first TTL.
func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	v.ServicePolicy(t)
	sec := v.Write(t, "auth/token/create", map[string]any{"policies": []string{"tokenizer"}, "ttl": "3s", "renewable": true})
	require.True(t, sec.Auth.Renewable)
	c := newClient(t, v.Addr, func(cfg *vault.Config) { cfg.Token, cfg.Timeout = sec.Auth.ClientToken, 5*time.Second })
	ctx := t.Context()
	w, err := c.DataKey(ctx)
	require.NoError(t, err)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, err := c.Decrypt(ctx, w)
		require.NoError(t, err, "the token was renewed before its 3 s TTL ran out")
		time.Sleep(250 * time.Millisecond)
	}
	look, err := v.Client.Auth().Token().Lookup(sec.Auth.ClientToken)
	require.NoError(t, err)
	ttl, err := look.TokenTTL()
	require.NoError(t, err)
	assert.Positive(t, ttl)
}
