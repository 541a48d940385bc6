package app_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
)

// initWithNewKey initializes the database of cfg with a fresh key file, as another
// checkout would have, and closes.
func initWithNewKey(t *testing.T, cfg *config.Config) {
	t.Helper()
	other := *cfg
	other.Keys.LocalFile = filepath.Join(t.TempDir(), "other-kek.hex")
	a, err := app.Build(t.Context(), &other, quiet(), app.WithProvider(localProvider(t, &other)))
	require.NoError(t, err)
	require.NoError(t, a.Init(t.Context()))
	a.Close()
}

// TestKeyMismatchStopsAtOnce: a database whose data keys another key file wrapped is
// not retried: Init fails with ErrKeyMismatch naming the database, the key file, the
// cause and the ways out; Start reports it through Failed at once and /readyz's
// reason says the same.
func TestKeyMismatchStopsAtOnce(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pgtest.NewDatabase(t))
	cfg.Dev = true
	initWithNewKey(t, cfg)

	a, err := app.Build(t.Context(), cfg, quiet(), app.WithProvider(localProvider(t, cfg)))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	err = a.Init(t.Context())
	require.ErrorIs(t, err, app.ErrKeyMismatch)
	require.ErrorIs(t, err, keys.ErrCorrupt, "the cause is kept")
	msg := err.Error()
	for _, want := range []string{
		"database " + config.RedactURL(cfg.Database.URL),
		"local key file " + cfg.Keys.LocalFile,
		"wrapped by a different key file",
		"wrapped data key does not authenticate",
		"use the key file they were created with (keys.local_file)",
		"use a different database (database.url)",
		"`tokenizer dev reset`",
	} {
		assert.Contains(t, msg, want)
	}
	assert.Equal(t, 1, strings.Count(msg, "\n")+1, "one line")

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	failed := make(chan error, 1)
	a.Start(ctx, app.Hooks{Failed: func(err error) { failed <- err }})
	select {
	case err := <-failed:
		assert.ErrorIs(t, err, app.ErrKeyMismatch)
	case <-time.After(5 * time.Second):
		t.Fatal("Start kept retrying a key mismatch")
	}
	assert.Contains(t, a.NotReady(ctx), "wrapped by a different key file")
	_, err = a.Engine()
	assert.Error(t, err, "nothing served")
}

// renamed is a provider that calls itself something else.
type renamed struct {
	keys.Provider
	name string
}

func (r renamed) Name() string { return r.name }

// TestKeyMismatchOtherProviderAndCheckKeys: keys wrapped by another provider are a
// mismatch too (for Vault configured, no --dev reset is offered); CheckKeys, which
// creates nothing, says the same; a database that answers nothing is not a mismatch.
func TestKeyMismatchOtherProviderAndCheckKeys(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pgtest.NewDatabase(t))
	cfg.Dev = true
	initWithNewKey(t, cfg)

	vcfg := *cfg
	vcfg.Dev = false
	vcfg.Keys.Provider = "vault"
	vcfg.Keys.Vault.Address = "https://vault.example:8200"
	a, err := app.Build(t.Context(), &vcfg, quiet(), app.ForCommand(), app.WithProvider(renamed{localProvider(t, cfg), "vault"}))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	err = a.CheckKeys(t.Context())
	require.ErrorIs(t, err, app.ErrKeyMismatch)
	assert.Contains(t, err.Error(), "wrapped by another key provider")
	assert.Contains(t, err.Error(), "vault https://vault.example:8200 transit key transit/tokenizer-kek")
	assert.NotContains(t, err.Error(), "dev reset", "reset is for the local development provider only")
	require.ErrorIs(t, a.Load(t.Context()), app.ErrKeyMismatch)

	down := testConfig(t, "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable&connect_timeout=1")
	b, err := app.Build(t.Context(), down, quiet(), app.ForCommand(), app.WithProvider(localProvider(t, down)))
	require.NoError(t, err)
	t.Cleanup(b.Close)
	err = b.CheckKeys(t.Context())
	require.Error(t, err)
	assert.False(t, errors.Is(err, app.ErrKeyMismatch), "an unreachable database is retried, not a mismatch")
}

// TestResolveDevDatabase: in development with the local key file and the default
// database URL, the database is named after the key file's key; anything configured
// explicitly is left alone.
func TestResolveDevDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dev := func(file string) *config.Config {
		c := config.Defaults()
		c.Dev, c.Keys.Provider, c.Keys.LocalFile = true, "local", filepath.Join(dir, file)
		return c
	}
	a := dev("a.hex")
	changed, err := app.ResolveDevDatabase(a)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Regexp(t, `^postgres://postgres@127\.0\.0\.1:5432/tokenizer_dev_[0-9a-f]{8}\?sslmode=disable$`, a.Database.URL)
	assert.FileExists(t, filepath.Join(dir, "a.hex"), "the key file is created")

	again := dev("a.hex")
	_, err = app.ResolveDevDatabase(again)
	require.NoError(t, err)
	assert.Equal(t, a.Database.URL, again.Database.URL, "same key file, same database")

	b := dev("b.hex")
	_, err = app.ResolveDevDatabase(b)
	require.NoError(t, err)
	assert.NotEqual(t, a.Database.URL, b.Database.URL, "another key file, another database")

	explicit := dev("a.hex")
	explicit.Database.URL = "postgres://postgres@127.0.0.1:5432/mine?sslmode=disable"
	vault := config.Defaults()
	vault.Dev, vault.Keys.Provider = true, "vault"
	prod := config.Defaults()
	prod.Keys.Provider = "local"
	for name, c := range map[string]*config.Config{"explicit url": explicit, "vault": vault, "not dev": prod} {
		before := c.Database.URL
		changed, err := app.ResolveDevDatabase(c)
		require.NoError(t, err, name)
		assert.False(t, changed, name)
		assert.Equal(t, before, c.Database.URL, name)
	}
}
