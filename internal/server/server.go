// Package server runs the tokenizer: the gRPC server with its interceptor chain, the
// REST gateway (which dials the gRPC port, so every interceptor runs for REST too),
// health and reflection, and the admin port with /metrics, /healthz and /readyz.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/keys"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/store"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// Server is one running tokenizer.
type Server struct {
	cfg      *config.Config
	log      *slog.Logger
	metrics  *metrics
	classes  []*tokenizer.Class
	classSet map[string]bool
	provider keys.Provider
	store    *store.Store

	engine  atomic.Pointer[tokenizer.Engine]
	keyring atomic.Pointer[keys.Keyring]
	ready   atomic.Bool
	// keysDown is set while the key provider fails its check: requests then fail
	// closed, so that sealing Vault stops every reveal.
	keysDown atomic.Bool
	// initErr is why the service is not ready yet, for /readyz and logs.
	initErr atomic.Pointer[string]

	grpc     *grpc.Server // the network port
	internal *grpc.Server // in memory, for the REST gateway only
	inmem    *bufconn.Listener
	health   *health.Server
	certs    *certs
	policies *policy.Store

	auditSink audit.Sink
	writer    *audit.Writer
	sinkFile  io.WriteCloser

	grpcLis, httpLis, adminLis net.Listener
}

// Addrs are the addresses a Server listens on (useful when configured with port 0).
type Addrs struct {
	GRPC, HTTP, Admin string
}

// Option adjusts a server.
type Option func(*Server)

// WithAuditSink replaces the audit writer, to measure what auditing costs. The service
// itself never runs without its audit log.
func WithAuditSink(sink audit.Sink) Option { return func(s *Server) { s.auditSink = sink } }

// New builds a server and binds its listeners; Run serves.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, provider keys.Provider, opts ...Option) (*Server, error) {
	classes, err := cfg.CompiledClasses()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, metrics: newMetrics(), classes: classes, provider: provider}
	st, err := store.Open(ctx, cfg.Database.URL, store.Options{MaxConns: int32(cfg.Database.MaxConns), ConnectTimeout: cfg.Database.ConnectTimeout})
	if err != nil {
		return nil, err
	}
	s.store = st
	s.writer = audit.NewWriter(st, log, cfg.Audit.WriteTimeout)
	s.auditSink = s.writer
	for _, o := range opts {
		o(s)
	}

	names := make([]string, len(classes))
	s.classSet = map[string]bool{}
	for i, c := range classes {
		names[i] = c.Name
		s.classSet[c.Name] = true
	}
	var fixed *policy.Policy
	if cfg.Insecure {
		fixed = policy.Dev()
		log.Warn("INSECURE MODE: plaintext, and every caller is \"dev\" with the development policy. Never for PHI")
	}
	if s.policies, err = policy.NewStore(cfg.PolicyFile, names, fixed); err != nil {
		st.Close()
		return nil, err
	}
	opts2 := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.Limits.MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
	}
	if !cfg.Insecure {
		if s.certs, err = newCerts(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile, log); err != nil {
			st.Close()
			return nil, err
		}
		opts2 = append(opts2, grpc.Creds(credentials.NewTLS(s.certs.config("h2"))))
	}
	s.registerOpsMetrics()
	s.health = health.NewServer()
	s.grpc = grpc.NewServer(append(opts2,
		grpc.ChainUnaryInterceptor(s.unaryInterceptor(false)),
		grpc.ChainStreamInterceptor(s.streamInterceptor(false)))...)
	// The gateway's own server: reachable only in memory, so the identity the gateway
	// forwards in metadata (verified from the REST client's certificate) can be trusted.
	s.internal = grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.Limits.MaxMessageBytes),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor(true)),
		grpc.ChainStreamInterceptor(s.streamInterceptor(true)))
	s.inmem = bufconn.Listen(1 << 20)
	for _, g := range []*grpc.Server{s.grpc, s.internal} {
		tokenizerv1.RegisterTokenizerServiceServer(g, &tokenizerService{s: s})
		tokenizerv1.RegisterAuditServiceServer(g, &auditService{s: s})
		healthpb.RegisterHealthServer(g, s.health)
	}
	reflection.Register(s.grpc)
	s.setServing(false)

	lc := net.ListenConfig{}
	for _, l := range []struct {
		addr string
		dst  *net.Listener
		name string
	}{{cfg.GRPCAddr, &s.grpcLis, "grpc_addr"}, {cfg.HTTPAddr, &s.httpLis, "http_addr"}, {cfg.AdminAddr, &s.adminLis, "admin_addr"}} {
		lis, err := lc.Listen(ctx, "tcp", l.addr)
		if err != nil {
			s.closeListeners()
			st.Close()
			return nil, fmt.Errorf("%s: listen on %s: %w", l.name, l.addr, err)
		}
		*l.dst = lis
	}
	return s, nil
}

// Addrs returns the bound addresses.
func (s *Server) Addrs() Addrs {
	return Addrs{GRPC: s.grpcLis.Addr().String(), HTTP: s.httpLis.Addr().String(), Admin: s.adminLis.Addr().String()}
}

func (s *Server) closeListeners() {
	for _, l := range []net.Listener{s.grpcLis, s.httpLis, s.adminLis} {
		if l != nil {
			l.Close()
		}
	}
}

func (s *Server) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range []string{"", tokenizerv1.TokenizerService_ServiceDesc.ServiceName, tokenizerv1.AuditService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(name, st)
	}
	s.ready.Store(ok)
	if ok {
		s.metrics.ready.Set(1)
	} else {
		s.metrics.ready.Set(0)
	}
}

func (s *Server) isClass(name string) bool { return s.classSet[name] }

// engineReady returns the engine, or UNAVAILABLE while the service is starting.
func (s *Server) engineReady() (*tokenizer.Engine, error) {
	e := s.engine.Load()
	if e == nil {
		return nil, errs.New(errs.Unavailable, "service is not ready: database or keys not available yet")
	}
	if s.keysDown.Load() {
		return nil, errs.New(errs.Unavailable, "key service unavailable")
	}
	return e, nil
}

// initialize brings up what the engine needs: in dev mode the database and schema; in
// every mode a current schema and the data keys. It is retried until it succeeds.
func (s *Server) initialize(ctx context.Context) error {
	if s.cfg.Dev {
		if err := store.EnsureDatabase(ctx, s.cfg.Database.URL); err != nil {
			return fmt.Errorf("create database: %w", err)
		}
		applied, err := s.store.Migrate(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if len(applied) > 0 {
			s.log.InfoContext(ctx, "migrations applied", slog.Any("versions", applied))
		}
	}
	v, err := s.store.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v != store.LatestVersion() {
		return fmt.Errorf("database schema is at version %d, this build needs %d: run `tokenizer migrate`", v, store.LatestVersion())
	}
	kr := keys.NewKeyring(s.provider, s.store)
	if err := kr.Ensure(ctx, tokenizer.KeyPurposes(s.classes)...); err != nil {
		return fmt.Errorf("load data keys: %w", err)
	}
	eng, err := tokenizer.New(s.classes, s.store, kr, tokenizer.Limits{MaxItems: s.cfg.Limits.MaxItems, MaxValueBytes: s.cfg.Limits.MaxValueBytes})
	if err != nil {
		return err
	}
	s.keyring.Store(kr)
	s.engine.Store(eng)
	return nil
}

// watchPolicy reloads the policy file on SIGHUP and when it changes on disk. A file
// that does not load keeps the policy in force, and the log says why.
func (s *Server) watchPolicy(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick.C:
			if !s.policies.Changed() {
				continue
			}
		}
		if err := s.policies.Reload(); err != nil {
			s.log.Error("policy reload failed; keeping the policy in force", slog.String("error", err.Error()))
			s.metrics.policyReloads.WithLabelValues("failed").Inc()
			continue
		}
		s.log.Info("policy reloaded")
		s.metrics.policyReloads.WithLabelValues("ok").Inc()
	}
}

// startCheckpoints signs the audit chain head periodically.
func (s *Server) startCheckpoints(ctx context.Context) {
	signer, ok := s.provider.(audit.Signer)
	if !ok {
		s.log.Warn("the key provider cannot sign: audit checkpoints are off")
		return
	}
	var sink io.Writer
	switch s.cfg.Audit.CheckpointSink {
	case "none":
	case "stdout":
		sink = os.Stdout
	default:
		_ = os.MkdirAll(filepath.Dir(s.cfg.Audit.CheckpointSink), 0o700)
		f, err := os.OpenFile(s.cfg.Audit.CheckpointSink, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			s.log.Error("audit checkpoint sink unusable; checkpoints stay in the database only", slog.String("error", err.Error()))
		} else {
			sink, s.sinkFile = f, f
		}
	}
	cp := &audit.Checkpointer{
		Store: s.store, Signer: signer, Sink: sink, Every: int64(s.cfg.Audit.CheckpointEvery),
		Interval: s.cfg.Audit.CheckpointInterval, Log: s.log, Appended: s.writer.Appended,
	}
	go cp.Run(ctx)
}

// monitorKeys checks the key provider every CheckInterval and re-reads the stored data
// keys every ReloadInterval (rotations and rewraps made by `tokenizer keys`).
func (s *Server) monitorKeys(ctx context.Context) {
	check := time.NewTicker(s.cfg.Keys.CheckInterval)
	defer check.Stop()
	reload := time.NewTicker(s.cfg.Keys.ReloadInterval)
	defer reload.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			cctx, cancel := context.WithTimeout(ctx, s.cfg.Keys.CheckInterval)
			err := s.provider.Check(cctx)
			cancel()
			down := err != nil
			if s.keysDown.Swap(down) != down {
				if down {
					s.log.Error("key provider unavailable: refusing requests", slog.String("error", err.Error()))
				} else {
					s.log.Info("key provider available again")
				}
				s.setServing(!down)
			}
		case <-reload.C:
			if kr := s.keyring.Load(); kr != nil && !s.keysDown.Load() {
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				if err := kr.Reload(rctx); err != nil {
					s.log.Warn("reload data keys failed; keeping the loaded ones", slog.String("error", err.Error()))
				}
				cancel()
			}
		}
	}
}

func (s *Server) initLoop(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for {
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.initialize(ictx)
		cancel()
		if err == nil {
			s.initErr.Store(nil)
			s.setServing(true)
			s.log.InfoContext(ctx, "ready")
			s.startCheckpoints(ctx)
			s.monitorKeys(ctx)
			return
		}
		msg := err.Error()
		s.initErr.Store(&msg)
		s.log.WarnContext(ctx, "not ready; retrying", slog.String("reason", msg), slog.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Run serves until ctx is done, then shuts down gracefully: the listeners stop
// accepting, in-flight requests (and streams) finish within the shutdown timeout, and
// only then does Run return.
func (s *Server) Run(ctx context.Context) error {
	defer s.store.Close()
	a := s.Addrs()
	s.log.Info("listening", slog.String("grpc", a.GRPC), slog.String("http", a.HTTP), slog.String("admin", a.Admin),
		slog.Bool("dev", s.cfg.Dev), slog.String("key_provider", s.provider.Name()))

	gw, err := s.gatewayHandler(ctx)
	if err != nil {
		s.closeListeners()
		return err
	}
	httpSrv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	httpLis := s.httpLis
	if s.certs != nil {
		httpLis = tls.NewListener(s.httpLis, s.certs.config("h2", "http/1.1"))
	}
	go s.watchPolicy(ctx)
	adminSrv := &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}

	initCtx, stopInit := context.WithCancel(ctx)
	defer stopInit()
	go s.initLoop(initCtx)

	errc := make(chan error, 3)
	var wg sync.WaitGroup
	serve := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("%s server: %w", name, err)
			}
		}()
	}
	serve("grpc", func() error { return s.grpc.Serve(s.grpcLis) })
	serve("grpc-internal", func() error { return s.internal.Serve(s.inmem) })
	serve("http", func() error { return httpSrv.Serve(httpLis) })
	serve("admin", func() error { return adminSrv.Serve(s.adminLis) })

	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down: finishing in-flight requests", slog.Duration("timeout", s.cfg.ShutdownTimeout))
	case runErr = <-errc:
		s.log.Error("server failed; shutting down", slog.String("error", runErr.Error()))
	}
	s.setServing(false)
	stopInit()

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	// REST first: its in-flight requests still need the gRPC server behind them.
	if err := httpSrv.Shutdown(sctx); err != nil {
		s.log.Warn("REST gateway did not finish in time", slog.String("error", err.Error()))
	}
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		s.internal.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-sctx.Done():
		s.log.Warn("gRPC requests did not finish in time; stopping them")
		s.grpc.Stop()
		s.internal.Stop()
	}
	_ = adminSrv.Shutdown(sctx)
	wg.Wait()
	s.writer.Close()
	if s.sinkFile != nil {
		s.sinkFile.Close()
	}
	s.log.Info("stopped")
	return runErr
}
