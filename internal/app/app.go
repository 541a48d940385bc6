// Package app is the composition root: it turns the settings of internal/config into
// the running parts of the service (token store, key provider, keyring, engine, audit
// writer, policy) and their background workers, once, for `serve` and for every
// command. Nothing else wires adapters to the domain.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/fhir"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/store/cache"
	"github.com/phivault/tokenizer/internal/store/coalesce"
	"github.com/phivault/tokenizer/internal/tokenizer"
	"github.com/phivault/tokenizer/internal/vault"
)

// App is one assembled service.
type App struct {
	Config   *config.Config
	Log      *slog.Logger
	Classes  []*tokenizer.Class
	Store    *store.Store
	Provider keys.Provider
	Policies *policy.Store
	// FHIRRegistry holds the FHIR profiles: the presets and the configured ones.
	FHIRRegistry *fhir.Registry
	// Audit is where request events go: the chain writer, unless replaced (WithAuditSink)
	// to measure what auditing costs.
	Audit audit.Sink

	writer *audit.Writer
	// Cache is the mapping cache in front of Store (nil when off).
	Cache *cache.Store
	// Coalesce merges concurrent small calls into one statement, between Cache and
	// Store (nil when off).
	Coalesce *coalesce.Store
	monitor  *keys.Monitor
	classSet map[string]bool
	engine   atomic.Pointer[tokenizer.Engine]
	keyring  atomic.Pointer[keys.Keyring]
	initErr  atomic.Pointer[string]
	closers  []func()
}

// Option adjusts Build.
type Option func(*options)

type options struct {
	provider  keys.Provider
	auditSink audit.Sink
	noKeys    bool
	command   bool
}

// WithProvider uses p instead of the configured key provider (tests).
func WithProvider(p keys.Provider) Option { return func(o *options) { o.provider = p } }

// WithAuditSink replaces the audit writer, to measure what auditing costs. The service
// itself never runs without its audit log.
func WithAuditSink(s audit.Sink) Option { return func(o *options) { o.auditSink = s } }

// WithoutKeys builds no key provider (migrate needs none).
func WithoutKeys() Option { return func(o *options) { o.noKeys = true } }

// ForCommand builds for a command rather than the service: a small connection pool
// and no policy (commands are run by operators, and audited as cli:<user>).
func ForCommand() Option { return func(o *options) { o.command = true } }

// Build assembles the service from cfg. It does not wait for PostgreSQL or the key
// provider: Init (once, for commands) or Start (retried, for serve) does.
func Build(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*App, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	classes, err := CompileClasses(cfg)
	if err != nil {
		return nil, err
	}
	log = slog.New(RateLimitLogs(log.Handler()))
	a := &App{Config: cfg, Log: log, Classes: classes, classSet: map[string]bool{}}
	for _, c := range classes {
		a.classSet[c.Name] = true
	}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	if err := a.buildProvider(o); err != nil {
		return nil, err
	}
	maxConns := cfg.Database.MaxConns
	if o.command {
		maxConns = 4
	}
	sopts := store.Options{MaxConns: int32(maxConns), ConnectTimeout: cfg.Database.ConnectTimeout}
	if !o.command {
		// No statement of a request outlives the request (commands run long jobs).
		sopts.StatementTimeout = cfg.RequestTimeout
	}
	if a.Store, err = store.Open(ctx, cfg.Database.URL, sopts); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.Store.Close)
	a.buildDecorators(o)
	if !o.command {
		if a.Policies, err = policy.NewStore(cfg.PolicyFile, a.ClassNames(), fixedPolicy(cfg, log), policy.WithStaticClasses(a.staticClassNames())); err != nil {
			return nil, err
		}
	}
	if a.FHIRRegistry, err = FHIRProfiles(cfg, a.IsClass); err != nil {
		return nil, err
	}
	a.writer = audit.NewWriter(a.Store, log, cfg.Audit.WriteTimeout)
	a.writer.SetMACKey(a.auditKey)
	a.closers = append(a.closers, a.writer.Close)
	a.Audit = a.writer
	if o.auditSink != nil {
		a.Audit = o.auditSink
	}
	ok = true
	return a, nil
}

// ObserveAuditBatches has o told of every audit group commit (for metrics).
func (a *App) ObserveAuditBatches(o audit.BatchObserver) {
	if a.writer != nil {
		a.writer.SetObserver(o)
	}
}

// buildDecorators puts the service's decorators around the token store: coalescing
// next to it, the cache in front (whose hits then never wait). Commands get neither.
func (a *App) buildDecorators(o options) {
	if o.command {
		return
	}
	var inner tokenizer.Store = a.Store
	if c := a.Config.Coalesce; c.Window > 0 {
		a.Coalesce = coalesce.New(a.Store, coalesce.Options{Window: c.Window, MaxItems: c.MaxItems})
		inner = a.Coalesce
	}
	if c := a.Config.Cache; c.Entries > 0 {
		a.Cache = cache.New(inner, cache.Options{Entries: c.Entries, TTL: c.TTL})
	}
}

// OpenStore opens the token vault's connection pool (it does not wait for the
// database). migrate uses it alone; Build for everything else.
func OpenStore(ctx context.Context, cfg *config.Config, maxConns int) (*store.Store, error) {
	return store.Open(ctx, cfg.Database.URL, store.Options{MaxConns: int32(maxConns), ConnectTimeout: cfg.Database.ConnectTimeout})
}

func fixedPolicy(cfg *config.Config, log *slog.Logger) *policy.Policy {
	if !cfg.Insecure {
		return nil
	}
	log.Warn("INSECURE MODE: plaintext, and every caller is \"dev\" with the development policy. Never for PHI")
	return policy.Dev()
}

func (a *App) buildProvider(o options) error {
	switch {
	case o.provider != nil:
		a.Provider = o.provider
	case o.noKeys:
	default:
		p, closeP, err := NewProvider(a.Config, a.Log)
		if err != nil {
			return err
		}
		a.Provider = p
		a.closers = append(a.closers, closeP)
	}
	return nil
}

// NewProvider builds the configured key provider.
func NewProvider(cfg *config.Config, log *slog.Logger) (keys.Provider, func(), error) {
	switch cfg.Keys.Provider {
	case "local":
		p, created, err := keys.OpenLocal(cfg.Keys.LocalFile)
		if err != nil {
			return nil, nil, err
		}
		attrs := []any{slog.String("key_file", cfg.Keys.LocalFile)}
		if created {
			attrs = append(attrs, slog.Bool("created", true))
		}
		log.Warn("DEVELOPMENT KEY PROVIDER: the key-encryption key is a local file. NOT FOR PHI: use keys.provider=vault in production", attrs...)
		return p, func() {}, nil
	case "vault":
		c, err := vault.New(cfg.Keys.Vault, log)
		if err != nil {
			return nil, nil, err
		}
		return vault.NewProvider(c), c.Close, nil
	}
	return nil, nil, fmt.Errorf("keys.provider %q: want local or vault", cfg.Keys.Provider)
}

// CompileClasses compiles the configured token classes; errors name the class's place
// in the configuration (classes[i]).
func CompileClasses(cfg *config.Config) ([]*tokenizer.Class, error) {
	out := make([]*tokenizer.Class, 0, len(cfg.Classes))
	var problems []string
	for i, cc := range cfg.Classes {
		c, err := tokenizer.Compile(cc)
		if err != nil {
			problems = append(problems, fmt.Sprintf("classes[%d]: %v", i, err))
			continue
		}
		out = append(out, c)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	return out, nil
}

// ClassNames lists the configured classes.
func (a *App) ClassNames() []string {
	out := make([]string, len(a.Classes))
	for i, c := range a.Classes {
		out[i] = c.Name
	}
	return out
}

// staticClassNames lists the static classes (never nil), for the policy's oracle check.
func (a *App) staticClassNames() []string {
	out := []string{}
	for _, c := range a.Classes {
		if c.Mode == tokenizer.Static {
			out = append(out, c.Name)
		}
	}
	return out
}

// IsClass reports whether name is a configured class.
func (a *App) IsClass(name string) bool { return a.classSet[name] }

// Engine returns the engine, or UNAVAILABLE while the service starts or while the key
// provider is down (requests fail closed).
func (a *App) Engine() (*tokenizer.Engine, error) {
	e := a.engine.Load()
	if e == nil {
		return nil, errs.New(errs.Unavailable, "service is not ready: database or keys not available yet")
	}
	if a.monitor != nil && a.monitor.Down() {
		return nil, errs.New(errs.Unavailable, "key service unavailable")
	}
	return e, nil
}

// auditKey is the current audit key, which authenticates every audit event; until the
// keyring is loaded there is none and appends fail closed.
func (a *App) auditKey() (int, []byte, error) {
	kr := a.keyring.Load()
	if kr == nil {
		return 0, nil, errs.New(errs.Unavailable, "keys not loaded yet")
	}
	k, err := kr.Current(keys.AuditMAC)
	if err != nil {
		return 0, nil, err
	}
	return k.Version, k.Material, nil
}

// AuditKeys looks up audit keys by version, for verification (nil before Load).
func (a *App) AuditKeys() audit.MACKeys {
	kr := a.keyring.Load()
	if kr == nil {
		return nil
	}
	return func(v int) ([]byte, error) {
		k, err := kr.Version(keys.AuditMAC, v)
		return k.Material, err
	}
}

// Keyring is the keyring in service (nil before Init succeeds).
func (a *App) Keyring() *keys.Keyring { return a.keyring.Load() }

// Signer is the provider's checkpoint signer, if it can sign.
func (a *App) Signer() (audit.Signer, bool) {
	s, ok := a.Provider.(audit.Signer)
	return s, ok
}

// Close stops the workers' resources in reverse order of creation.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// tokenStore is what the engine reads and writes: the cache when on, else the
// coalescing decorator when on, else the store.
func (a *App) tokenStore() tokenizer.Store {
	switch {
	case a.Cache != nil:
		return a.Cache
	case a.Coalesce != nil:
		return a.Coalesce
	}
	return a.Store
}
