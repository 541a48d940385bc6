package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// Init brings up what the engine needs, once: in development mode the database and
// the schema, then Load. Start retries it.
func (a *App) Init(ctx context.Context) error {
	if a.Config.Dev {
		if err := store.EnsureDatabase(ctx, a.Config.Database.URL); err != nil {
			return fmt.Errorf("create database: %w", err)
		}
		applied, err := a.Store.Migrate(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if len(applied) > 0 {
			a.Log.InfoContext(ctx, "migrations applied", slog.Any("versions", applied))
		}
	}
	return a.Load(ctx)
}

// Load checks that the schema is current, loads (creating where missing) the data keys
// and builds the engine. Commands call it once and fail on its error.
func (a *App) Load(ctx context.Context) error {
	if err := a.CheckSchema(ctx); err != nil {
		return err
	}
	kr := keys.NewKeyring(a.Provider, a.Store)
	if err := kr.Ensure(ctx, append(tokenizer.KeyPurposes(a.Classes), keys.AuditMAC)...); err != nil {
		return keyError(a.Config, fmt.Errorf("load data keys: %w", err))
	}
	eng, err := tokenizer.New(a.Classes, a.tokenStore(), kr, tokenizer.Limits{MaxItems: a.Config.Limits.MaxItems, MaxValueBytes: a.Config.Limits.MaxValueBytes})
	if err != nil {
		return err
	}
	if err := a.enableSubjects(eng); err != nil {
		return err
	}
	a.keyring.Store(kr)
	a.engine.Store(eng)
	return nil
}

// CheckSchema fails unless the database schema is the one this build needs.
func (a *App) CheckSchema(ctx context.Context) error {
	v, err := a.Store.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v != store.LatestVersion() {
		return fmt.Errorf("database schema is at version %d, this build needs %d: run `tokenizer migrate`", v, store.LatestVersion())
	}
	return nil
}

// Hooks let the transport follow the service's state without the app knowing it.
type Hooks struct {
	// Ready is called with true once start-up succeeded, and on every change of the key
	// provider's availability.
	Ready func(bool)
	// PolicyReloaded is called after each policy reload attempt.
	PolicyReloaded func(error)
	// Failed is called, instead of retrying, when start-up cannot succeed with this
	// configuration (ErrKeyMismatch): the service should stop with err.
	Failed func(error)
}

// Start runs the background workers until ctx ends: Init, retried with backoff until
// it succeeds (readiness says why meanwhile); then the cache's invalidation feed, the
// key monitor and the audit checkpointer. The policy watcher runs from the start.
func (a *App) Start(ctx context.Context, h Hooks) {
	a.monitor = &keys.Monitor{
		Provider: a.Provider, Keyring: a.Keyring, Log: a.Log,
		CheckInterval: a.Config.Keys.CheckInterval, ReloadInterval: a.Config.Keys.ReloadInterval,
		OnChange: func(down bool) { call(h.Ready, !down) },
	}
	go a.Policies.Watch(ctx, a.Log, h.PolicyReloaded)
	go func() {
		if err := a.initLoop(ctx); err != nil {
			if h.Failed != nil && ctx.Err() == nil {
				h.Failed(err)
			}
			return
		}
		if a.Cache != nil {
			// Once the database is there (a development database is created by Init):
			// no engine request succeeds before Init, so the cache is still empty.
			a.Cache.Flush()
			go a.Cache.Follow(ctx, a.Store, a.Log)
		}
		call(h.Ready, true)
		a.startCheckpoints(ctx)
		a.monitor.Run(ctx)
	}()
}

func call(f func(bool), v bool) {
	if f != nil {
		f(v)
	}
}

// initLoop retries Init until it succeeds (nil), ctx ends (its error) or Init fails in
// a way retrying cannot mend (ErrKeyMismatch: that error, at once).
func (a *App) initLoop(ctx context.Context) error {
	backoff := 250 * time.Millisecond
	for {
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := a.Init(ictx)
		cancel()
		if err == nil {
			a.initErr.Store(nil)
			a.Log.InfoContext(ctx, "ready")
			return nil
		}
		msg := err.Error()
		a.initErr.Store(&msg)
		if errors.Is(err, ErrKeyMismatch) {
			return err
		}
		a.Log.WarnContext(ctx, "not ready; retrying", slog.String("reason", msg), slog.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// startCheckpoints signs the audit chain head periodically.
func (a *App) startCheckpoints(ctx context.Context) {
	signer, ok := a.Signer()
	if !ok {
		a.Log.Warn("the key provider cannot sign: audit checkpoints are off")
		return
	}
	sink, closeSink, err := audit.OpenSink(a.Config.Audit.CheckpointSink)
	if err != nil {
		a.Log.Error("audit checkpoint sink unusable; checkpoints stay in the database only", slog.String("error", err.Error()))
		closeSink = func() error { return nil }
	}
	cp := &audit.Checkpointer{
		Store: a.Store, Signer: signer, Sink: sink, Every: int64(a.Config.Audit.CheckpointEvery),
		Interval: a.Config.Audit.CheckpointInterval, Log: a.Log, Appended: a.writer.Appended,
	}
	go func() {
		cp.Run(ctx)
		_ = closeSink()
	}()
}

// NotReady returns why the service cannot serve now, or "": start-up has not
// succeeded, PostgreSQL does not answer, or the key provider fails its check.
func (a *App) NotReady(ctx context.Context) string {
	if a.engine.Load() == nil {
		if p := a.initErr.Load(); p != nil {
			return *p
		}
		return "starting"
	}
	if a.monitor != nil && a.monitor.Down() {
		return "key provider unavailable: requests fail closed until it answers again"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.Store.Ping(ctx); err != nil {
		return "database: " + err.Error()
	}
	if err := a.Provider.Check(ctx); err != nil {
		return "key provider: " + err.Error()
	}
	return ""
}

// KeyProviderUp reports the key monitor's verdict once the service is up; while it is
// still starting, it checks the provider itself.
func (a *App) KeyProviderUp() bool {
	if a.engine.Load() == nil || a.monitor == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return a.Provider.Check(ctx) == nil
	}
	return !a.monitor.Down()
}
