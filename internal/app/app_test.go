package app_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/testutil/pgtest"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is a valid configuration on dbURL with the development classes.
func testConfig(t *testing.T, dbURL string) *config.Config {
	t.Helper()
	c := config.Defaults()
	c.Log.Format = "json"
	c.Keys.Provider = "local"
	c.Keys.LocalFile = filepath.Join(t.TempDir(), "kek.hex")
	c.Database.URL = dbURL
	c.Classes = config.DefaultClasses()
	c.Audit.CheckpointSink = "none"
	require.NoError(t, c.Validate())
	return c
}

func localProvider(t *testing.T, cfg *config.Config) keys.Provider {
	t.Helper()
	p, created, err := keys.OpenLocal(cfg.Keys.LocalFile)
	require.NoError(t, err)
	require.True(t, created)
	return p
}

func TestCompileClassesNamesThePlace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		classes []config.Class
		want    []string
	}{
		{name: "bad name", classes: []config.Class{{Name: "ssn", Format: "ssn"}, {Name: "Bad Name", Format: "ssn"}},
			want: []string{"classes[1]: class name \"Bad Name\""}},
		{name: "no format", classes: []config.Class{{Name: "x"}}, want: []string{"classes[0]: class x: format is required"}},
		{name: "bad mode", classes: []config.Class{{Name: "x", Format: "ssn", Mode: "sometimes"}},
			want: []string{"classes[0]: class x: mode \"sometimes\": want static or dynamic"}},
		{name: "bad generator", classes: []config.Class{{Name: "x", Format: "ssn", Mode: "static", Generator: "dice"}},
			want: []string{"classes[0]: class x: generator \"dice\": want random or fpe"}},
		{name: "negative ttl", classes: []config.Class{{Name: "x", Format: "ssn", TTL: -time.Second}},
			want: []string{"classes[0]: class x: ttl must not be negative"}},
		{name: "every problem", classes: []config.Class{{Name: "a"}, {Name: "b", Format: "ssn"}, {Name: "c"}},
			want: []string{"classes[0]: class a: format is required", "classes[2]: class c: format is required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Defaults()
			cfg.Classes = tc.classes
			_, err := app.CompileClasses(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "invalid configuration:")
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	t.Run("development classes compile", func(t *testing.T) {
		t.Parallel()
		cfg := config.Defaults()
		cfg.Classes = config.DefaultClasses()
		cs, err := app.CompileClasses(cfg)
		require.NoError(t, err)
		require.Len(t, cs, len(cfg.Classes))
		for i, c := range cs {
			assert.Equal(t, cfg.Classes[i].Name, c.Name)
		}
	})
}

// TestLifecycle builds on a fresh database that is not migrated: the engine is not
// ready, Load refuses the old schema, and after migrating it serves.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig(t, pgtest.NewDatabase(t))
	a, err := app.Build(ctx, cfg, quiet(), app.WithProvider(localProvider(t, cfg)))
	require.NoError(t, err)
	t.Cleanup(a.Close)

	_, err = a.Engine()
	require.Error(t, err)
	assert.Equal(t, errs.Unavailable, errs.KindOf(err))
	assert.Equal(t, "starting", a.NotReady(ctx))
	assert.Nil(t, a.Keyring())

	for _, c := range []string{"ssn", "mrn", "ssn_dynamic"} {
		assert.True(t, a.IsClass(c), c)
		assert.Equal(t, c, a.ClassLabel(c))
	}
	for _, c := range []string{"", "SSN", "123-45-6789"} {
		assert.False(t, a.IsClass(c), c)
		assert.Equal(t, "unknown", a.ClassLabel(c), "a class label never echoes what the client sent")
	}
	assert.Len(t, a.ClassNames(), len(cfg.Classes))

	err = a.CheckSchema(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run `tokenizer migrate`")
	assert.Contains(t, err.Error(), "database schema is at version 0")
	err = a.Load(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run `tokenizer migrate`")
	err = a.Init(ctx)
	require.Error(t, err, "outside dev mode Init does not migrate")
	assert.Contains(t, err.Error(), "run `tokenizer migrate`")
	_, err = a.Engine()
	require.Error(t, err)

	applied, err := a.Store.Migrate(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, applied)
	assert.Equal(t, store.LatestVersion(), applied[len(applied)-1])
	require.NoError(t, a.CheckSchema(ctx))
	require.NoError(t, a.Load(ctx))
	assert.NotNil(t, a.Keyring())
	assert.Equal(t, "", a.NotReady(ctx))

	eng, err := a.Engine()
	require.NoError(t, err)
	tok, err := eng.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "ssn", Value: "123-45-6789"}}, 0)
	require.NoError(t, err)
	require.Len(t, tok, 1)
	require.NoError(t, tok[0].Err)
	assert.NotEqual(t, "123-45-6789", tok[0].Token)
	rev, err := eng.Detokenize(ctx, []tokenizer.DetokenizeItem{{Class: "ssn", Token: tok[0].Token}})
	require.NoError(t, err)
	require.Len(t, rev, 1)
	require.NoError(t, rev[0].Err)
	assert.Equal(t, "123-45-6789", rev[0].Value)

	_, ok := a.Signer()
	assert.True(t, ok, "the local provider signs checkpoints")
}

func TestInitInDevModeMigrates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig(t, pgtest.NewDatabase(t))
	cfg.Dev = true
	a, err := app.Build(ctx, cfg, quiet(), app.WithProvider(localProvider(t, cfg)))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	require.NoError(t, a.Init(ctx))
	require.NoError(t, a.CheckSchema(ctx))
	_, err = a.Engine()
	require.NoError(t, err)
	assert.Equal(t, "", a.NotReady(ctx))
	require.NoError(t, a.Init(ctx), "Init is idempotent")
}

func TestStartReportsReady(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pgtest.NewDatabase(t))
	cfg.Dev = true
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Build(ctx, cfg, quiet(), app.WithProvider(localProvider(t, cfg)))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	t.Cleanup(cancel) // runs first: the workers stop before the store closes
	ready := make(chan bool, 4)
	a.Start(ctx, app.Hooks{Ready: func(v bool) { ready <- v }})
	select {
	case v := <-ready:
		assert.True(t, v)
	case <-time.After(20 * time.Second):
		t.Fatal("Start did not report ready")
	}
	_, err = a.Engine()
	require.NoError(t, err)
	assert.Equal(t, "", a.NotReady(ctx))
}

func TestBuildPolicy(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("principals:\n  - id: spiffe://example.org/x\n    classes: {ssn: [tokenize]}\n"), 0o600))
	unknownClass := filepath.Join(dir, "unknown.yaml")
	require.NoError(t, os.WriteFile(unknownClass, []byte("principals:\n  - id: a\n    classes: {blood: [tokenize]}\n"), 0o600))
	tests := []struct {
		name     string
		insecure bool
		file     string
		opts     []app.Option
		check    func(t *testing.T, a *app.App)
		wantErr  string
	}{
		{name: "secure without policy file has no policy", check: func(t *testing.T, a *app.App) {
			require.NotNil(t, a.Policies)
			assert.Nil(t, a.Policies.Current(), "current behaviour: a nil policy")
		}},
		{name: "insecure serves the development policy", insecure: true, check: func(t *testing.T, a *app.App) {
			require.NotNil(t, a.Policies.Current())
			pr := a.Policies.Current().Find(policy.DevIdentity)
			require.NotNil(t, pr)
			assert.True(t, pr.Can("ssn", policy.OpDetokenize))
		}},
		{name: "policy file", file: good, check: func(t *testing.T, a *app.App) {
			pr := a.Policies.Current().Find("spiffe://example.org/x")
			require.NotNil(t, pr)
			assert.True(t, pr.Can("ssn", policy.OpTokenize))
			assert.Nil(t, a.Policies.Current().Find(policy.DevIdentity))
		}},
		{name: "policy file wins over insecure", file: good, insecure: true, check: func(t *testing.T, a *app.App) {
			assert.Nil(t, a.Policies.Current().Find(policy.DevIdentity))
		}},
		{name: "policy naming an unconfigured class", file: unknownClass, wantErr: `"blood" is not a configured class`},
		{name: "missing policy file", file: filepath.Join(dir, "absent.yaml"), wantErr: "policy file"},
		{name: "commands build no policy", file: good, opts: []app.Option{app.ForCommand()}, check: func(t *testing.T, a *app.App) {
			assert.Nil(t, a.Policies)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, dbURL)
			cfg.Insecure, cfg.PolicyFile = tc.insecure, tc.file
			a, err := app.Build(context.Background(), cfg, quiet(), append([]app.Option{app.WithoutKeys()}, tc.opts...)...)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			t.Cleanup(a.Close)
			assert.Nil(t, a.Provider, "WithoutKeys builds no provider")
			tc.check(t, a)
		})
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*config.Config)
		want   string
	}{
		{"bad class", func(c *config.Config) { c.Classes = []config.Class{{Name: "x"}} }, "classes[0]: class x: format is required"},
		{"unusable database URL", func(c *config.Config) { c.Database.URL = "postgres://u:hunter2@h:notaport/db" }, "invalid database URL"},
		{"unknown provider", func(c *config.Config) { c.Keys.Provider = "hsm" }, `keys.provider "hsm": want local or vault`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, "postgres://postgres@127.0.0.1:1/none?sslmode=disable")
			tc.mutate(cfg)
			_, err := app.Build(context.Background(), cfg, quiet())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestNewProviderLocal(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "postgres://h/db")
	p, closeP, err := app.NewProvider(cfg, quiet())
	require.NoError(t, err)
	defer closeP()
	assert.Equal(t, "local", p.Name())
	_, err = os.Stat(cfg.Keys.LocalFile)
	assert.NoError(t, err, "the local key file is created")
}

func TestBuildDecorators(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	build := func(mutate func(*config.Config), opts ...app.Option) *app.App {
		cfg := testConfig(t, dbURL)
		mutate(cfg)
		require.NoError(t, cfg.Validate())
		a, err := app.Build(ctx, cfg, quiet(), append(opts, app.WithProvider(localProvider(t, cfg)))...)
		require.NoError(t, err)
		t.Cleanup(a.Close)
		return a
	}
	a := build(func(*config.Config) {})
	assert.NotNil(t, a.Coalesce, "coalescing is on by default")
	assert.NotNil(t, a.Cache)
	a = build(func(c *config.Config) { c.Coalesce.Window = 0 })
	assert.Nil(t, a.Coalesce, "a zero window turns coalescing off")
	a = build(func(c *config.Config) { c.Cache.Entries = 0 })
	assert.NotNil(t, a.Coalesce, "coalescing does not need the cache")
	a = build(func(*config.Config) {}, app.ForCommand())
	assert.Nil(t, a.Coalesce, "commands get no coalescing")
	assert.Nil(t, a.Cache)

	// The engine runs through both decorators and still erases a subject's rows, which
	// the cache reaches through coalescing.
	a = build(func(c *config.Config) { c.Dev = true })
	require.NoError(t, a.Init(ctx))
	eng, err := a.Engine()
	require.NoError(t, err)
	tok, err := eng.Tokenize(ctx, []tokenizer.TokenizeItem{{Class: "ssn", Value: "123-45-6789", Subject: "MRN-00000042"}}, 0)
	require.NoError(t, err)
	require.NoError(t, tok[0].Err)
	_, err = eng.ForgetSubject(ctx, "MRN-00000042")
	require.NoError(t, err)
	rev, err := eng.Detokenize(ctx, []tokenizer.DetokenizeItem{{Class: "ssn", Token: tok[0].Token}})
	require.NoError(t, err)
	assert.Equal(t, errs.NotFound, errs.KindOf(rev[0].Err))
}
