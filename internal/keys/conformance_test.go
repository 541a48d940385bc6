package keys_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/testutil/netproxy"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/testutil/vaulttest"
	"github.com/phivault/tokenizer/internal/vault"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type full interface {
	keys.Provider
	keys.Rewrapper
	keys.Signer
}

func newVaultProvider(t *testing.T, addr string, mutate func(*vault.Config)) *vault.Provider {
	t.Helper()
	cfg := vault.Config{Address: addr, Token: vaulttest.RootToken, Timeout: 2 * time.Second, MaxRetries: 1}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := vault.New(cfg, quiet)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return vault.NewProvider(c)
}

// providers is every implementation the conformance suite runs against.
func providers(t *testing.T) map[string]full {
	local, created, err := keys.OpenLocal(filepath.Join(t.TempDir(), "kek.hex"))
	require.NoError(t, err)
	require.True(t, created)
	v := vaulttest.Start(t)
	return map[string]full{"local": local, "vault": newVaultProvider(t, v.Addr, nil)}
}

func TestProviderConformance(t *testing.T) {
	t.Parallel()
	for name, p := range providers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			require.NoError(t, p.Check(ctx))

			dk, wrapped, err := p.NewDataKey(ctx)
			require.NoError(t, err)
			assert.Len(t, dk, keys.DataKeySize)
			assert.False(t, bytes.Contains(wrapped, dk), "wrapped form holds the key in clear")
			got, err := p.Unwrap(ctx, wrapped)
			require.NoError(t, err)
			assert.Equal(t, dk, got)

			dk2, wrapped2, err := p.NewDataKey(ctx)
			require.NoError(t, err)
			assert.NotEqual(t, dk, dk2)
			assert.NotEqual(t, wrapped, wrapped2)

			bad := bytes.Clone(wrapped)
			bad[len(bad)-3] ^= 0x55
			_, err = p.Unwrap(ctx, bad)
			require.Error(t, err, "a corrupted wrapped key must not unwrap")
			assert.ErrorIs(t, err, keys.ErrCorrupt)

			re, err := p.Rewrap(ctx, wrapped)
			require.NoError(t, err)
			got, err = p.Unwrap(ctx, re)
			require.NoError(t, err)
			assert.Equal(t, dk, got)

			msg := []byte("seq=42 hash=abcdef")
			sig, err := p.Sign(ctx, msg)
			require.NoError(t, err)
			ok, err := p.Verify(ctx, msg, sig)
			require.NoError(t, err)
			assert.True(t, ok)
			ok, err = p.Verify(ctx, []byte("seq=43 hash=abcdef"), sig)
			require.NoError(t, err)
			assert.False(t, ok, "signature over another message")
			ok, err = p.Verify(ctx, msg, "garbage")
			require.NoError(t, err)
			assert.False(t, ok)
		})
	}
}

func TestKeyringOnPostgres(t *testing.T) {
	t.Parallel()
	for name, p := range providers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			st := openStore(t)
			kr := keys.NewKeyring(p, st)
			require.NoError(t, kr.Ensure(ctx, keys.ValueEncryption, keys.TokenDigest))
			v1, err := kr.Current(keys.ValueEncryption)
			require.NoError(t, err)
			assert.Equal(t, 1, v1.Version)

			// A second replica sees the same keys, and Ensure creates nothing new.
			kr2 := keys.NewKeyring(p, st)
			require.NoError(t, kr2.Ensure(ctx, keys.ValueEncryption, keys.TokenDigest))
			again, err := kr2.Current(keys.ValueEncryption)
			require.NoError(t, err)
			assert.Equal(t, v1, again)

			v, err := kr.Rotate(ctx, keys.ValueEncryption)
			require.NoError(t, err)
			assert.Equal(t, 2, v)
			cur, err := kr.Current(keys.ValueEncryption)
			require.NoError(t, err)
			assert.Equal(t, 2, cur.Version)
			old, err := kr.Version(keys.ValueEncryption, 1)
			require.NoError(t, err)
			assert.Equal(t, v1.Material, old.Material, "old versions stay readable")

			n, err := kr.RewrapAll(ctx)
			require.NoError(t, err)
			assert.Equal(t, 3, n)
			require.NoError(t, kr2.Reload(ctx))
			after, err := kr2.Version(keys.ValueEncryption, 1)
			require.NoError(t, err)
			assert.Equal(t, v1.Material, after.Material)

			// Stored keys are only ever wrapped.
			stored, err := st.DataKeys(ctx)
			require.NoError(t, err)
			for _, w := range stored {
				assert.Equal(t, p.Name(), w.Provider)
				assert.False(t, bytes.Contains(w.Wrapped, v1.Material))
			}
		})
	}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{MaxConns: 4, ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(t.Context())
	require.NoError(t, err)
	return st
}

func TestVaultKEKRotationAndRewrap(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	p := newVaultProvider(t, v.Addr, nil)
	ctx := t.Context()
	st := openStore(t)
	kr := keys.NewKeyring(p, st)
	require.NoError(t, kr.Ensure(ctx, keys.ValueEncryption))
	before, err := kr.Current(keys.ValueEncryption)
	require.NoError(t, err)

	v.RotateKEK(t)
	n, err := kr.RewrapAll(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	stored, err := st.DataKeys(ctx)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(stored[0].Wrapped), "vault:v2:"), "rewrapped under KEK v2")
	require.NoError(t, kr.Reload(ctx))
	after, err := kr.Current(keys.ValueEncryption)
	require.NoError(t, err)
	assert.Equal(t, before.Material, after.Material)

	// Once Vault refuses the old KEK version, only rewrapped keys still unwrap.
	v.Write(t, "transit/keys/"+vaulttest.KEK+"/config", map[string]any{"min_decryption_version": 2})
	require.NoError(t, kr.Reload(ctx))
}

func TestVaultAppRoleLoginAndRenewal(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	roleID, secretID := v.AppRole(t, "3s")
	p := newVaultProvider(t, v.Addr, func(c *vault.Config) {
		c.AuthMethod, c.Token, c.RoleID, c.SecretID = "approle", "", roleID, secretID
	})
	ctx := t.Context()
	_, wrapped, err := p.NewDataKey(ctx)
	require.NoError(t, err)
	// The AppRole token lives 3 s and cannot be renewed past its max TTL; the client
	// logs in again, so requests keep working well past the first token's life.
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		_, err := p.Unwrap(ctx, wrapped)
		require.NoError(t, err)
		time.Sleep(500 * time.Millisecond)
	}

	// A wrong secret ID is refused, not retried forever.
	bad := newVaultProvider(t, v.Addr, func(c *vault.Config) {
		c.AuthMethod, c.Token, c.RoleID, c.SecretID = "approle", "", roleID, "not-the-secret"
	})
	_, _, err = bad.NewDataKey(ctx)
	require.Error(t, err)
	assert.ErrorIs(t, err, vault.ErrRejected)
}

func TestVaultUnavailableFailsFast(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	proxy := netproxy.New(t, strings.TrimPrefix(v.Addr, "http://"))
	p := newVaultProvider(t, "http://"+proxy.Addr(), nil)
	ctx := t.Context()
	_, wrapped, err := p.NewDataKey(ctx)
	require.NoError(t, err)

	proxy.Down()
	start := time.Now()
	_, err = p.Unwrap(ctx, wrapped)
	require.Error(t, err)
	assert.ErrorIs(t, err, errs.ErrUnavailable)
	assert.Error(t, p.Check(ctx))
	t.Logf("unwrap failed after %v with Vault down", time.Since(start))

	proxy.Up()
	require.Eventually(t, func() bool {
		_, err := p.Unwrap(context.Background(), wrapped)
		return err == nil
	}, 10*time.Second, 100*time.Millisecond)
	assert.False(t, errors.Is(p.Check(ctx), errs.ErrUnavailable))
}
