// Package server is the transport of the tokenizer: the gRPC services (proto ⇄ domain),
// an explicit chain of single-purpose interceptors, the REST gateway (which reaches an
// in-memory gRPC server with the same chain, so every interceptor runs for REST too),
// health and reflection, and the admin port with /metrics, /healthz and /readyz. It
// holds no wiring and no lifecycle of its own parts: internal/app builds those.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	"github.com/phivault/tokenizer/internal/admin"
	"github.com/phivault/tokenizer/internal/api"
	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/authn"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/gateway"
	"github.com/phivault/tokenizer/internal/grpcx"
)

// Server is the transport of one running tokenizer.
type Server struct {
	app     *app.App
	cfg     *config.Config
	log     *slog.Logger
	metrics *admin.Metrics
	certs   *authn.Certs // nil in insecure mode

	grpc     *grpc.Server // the network port
	internal *grpc.Server // in memory, for the REST gateway only
	inmem    *bufconn.Listener
	health   *health.Server

	grpcLis, httpLis, adminLis net.Listener

	streams grpcx.Counts   // open streams per caller
	unknown sharedBucket   // the rate of callers without a policy entry
	trusted []netip.Prefix // proxies whose x-forwarded-for is believed
}

// Addrs are the addresses a Server listens on (useful when configured with port 0).
type Addrs struct {
	GRPC, HTTP, Admin string
}

// streamWorkersMin is the fewest gRPC stream workers: idle ones cost a goroutine each.
const streamWorkersMin = 64

// New builds the transport of a and binds its listeners; Run serves.
func New(ctx context.Context, a *app.App) (*Server, error) {
	cfg := a.Config
	s := &Server{app: a, cfg: cfg, log: a.Log, metrics: admin.NewMetrics()}
	var err error
	if s.trusted, err = config.ParseProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("trusted_proxies: %w", err)
	}
	// Reused stream workers keep the stacks they grew through the interceptor chain:
	// a goroutine per call spent a tenth of the CPU growing and copying stacks. A call
	// spends most of its time waiting for its audit commit, not on a CPU, so there are
	// many more workers than CPUs: a call that finds them all busy gets a new goroutine,
	// which grows its stack again (8 per CPU still did, at 16 concurrent calls).
	workers := grpc.NumStreamWorkers(uint32(max(streamWorkersMin, 8*runtime.GOMAXPROCS(0))))
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.Limits.MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute,
			MaxConnectionAge: cfg.Limits.MaxConnectionAge, MaxConnectionAgeGrace: cfg.RequestTimeout}),
		grpc.MaxConcurrentStreams(uint32(cfg.Limits.MaxStreamsPerConnection)),
		grpc.ForceServerCodec(grpcx.LenientCodec{}),
		workers,
	}
	if !cfg.Insecure {
		if s.certs, err = authn.NewCerts(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile, s.log); err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.certs.Config("h2"))))
	}
	ops := admin.OpsSources{KeyProviderUp: a.KeyProviderUp, Checkpoints: a.Store, CheckpointInterval: cfg.Audit.CheckpointInterval}
	if s.certs != nil {
		ops.CertExpiry = s.certs.Expiry
	}
	if c := a.Cache; c != nil {
		ops.Cache = func() (int64, int64, int) { h, m := c.Stats(); return h, m, c.Len() }
	}
	s.metrics.RegisterOps(ops)
	if c := a.Coalesce; c != nil {
		c.SetObserver(func(op string, calls, items int) {
			s.metrics.CoalescedCalls.WithLabelValues(op).Observe(float64(calls))
			s.metrics.CoalescedItems.WithLabelValues(op).Observe(float64(items))
		})
	}
	a.ObserveAuditBatches(func(events int, took time.Duration, _ error) {
		s.metrics.AuditBatchEvents.Observe(float64(events))
		s.metrics.AuditBatchSeconds.Observe(took.Seconds())
	})
	s.health = health.NewServer()
	s.grpc = grpc.NewServer(append(opts, s.chain(false)...)...)
	// The gateway's own server: reachable only in memory, so the identity the gateway
	// forwards in metadata (verified from the REST client's certificate) can be trusted.
	s.internal = grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(cfg.Limits.MaxMessageBytes), grpc.ForceServerCodec(grpcx.LenientCodec{}), workers}, s.chain(true)...)...)
	s.inmem = bufconn.Listen(1 << 20)
	handlers := &api.Handlers{App: a, Metrics: s.metrics, Transport: s}
	for _, g := range []*grpc.Server{s.grpc, s.internal} {
		handlers.Register(g)
		healthpb.RegisterHealthServer(g, s.health)
	}
	if cfg.Reflection || cfg.Dev {
		reflection.Register(s.grpc)
	}
	s.metrics.SecurityMode.WithLabelValues(cfg.SecurityMode()).Set(1)
	s.setServing(false)
	if err := s.listen(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) listen(ctx context.Context) error {
	lc := net.ListenConfig{}
	for _, l := range []struct {
		addr string
		dst  *net.Listener
		name string
	}{{s.cfg.GRPCAddr, &s.grpcLis, "grpc_addr"}, {s.cfg.HTTPAddr, &s.httpLis, "http_addr"}, {s.cfg.AdminAddr, &s.adminLis, "admin_addr"}} {
		lis, err := lc.Listen(ctx, "tcp", l.addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("%s: listen on %s: %w", l.name, l.addr, err)
		}
		*l.dst = lis
	}
	return nil
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
	s.health.SetServingStatus("", st)
	for _, sd := range api.Services {
		s.health.SetServingStatus(sd.ServiceName, st)
	}
	s.metrics.Ready.Set(map[bool]float64{true: 1}[ok])
}

func (s *Server) policyReloaded(err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	s.metrics.PolicyReloads.WithLabelValues(result).Inc()
}

// Run serves until ctx is done, then shuts down gracefully: the listeners stop
// accepting, in-flight requests (and streams) finish within the shutdown timeout, and
// only then does Run return. The app's workers run as long as ctx.
func (s *Server) Run(ctx context.Context) error {
	a := s.Addrs()
	s.log.Info("listening", slog.String("grpc", a.GRPC), slog.String("http", a.HTTP), slog.String("admin", a.Admin),
		slog.Bool("dev", s.cfg.Dev), slog.String("key_provider", s.app.Provider.Name()),
		slog.String("security_mode", s.cfg.SecurityMode()), slog.Bool("reflection", s.cfg.Reflection || s.cfg.Dev))
	for _, w := range s.cfg.Warnings {
		s.log.Warn("configuration", slog.String("warning", w))
	}
	gw, err := s.gateway(ctx)
	if err != nil {
		s.closeListeners()
		return err
	}
	// A body that stops arriving is cut off after read_idle_timeout, and so is a kept-alive
	// connection that sends no next request; a body other than a stream's that is not
	// complete after read_body_timeout is cut off too (a client trickling bytes).
	idle := s.cfg.Limits.ReadIdleTimeout
	httpSrv := &http.Server{Handler: gateway.ReadIdle(idle, s.cfg.Limits.ReadBodyTimeout, gw), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle}
	httpLis := s.httpLis
	if s.certs != nil {
		httpLis = tls.NewListener(s.httpLis, s.certs.Config("h2", "http/1.1"))
	}
	var adminOpts []admin.Option
	if s.cfg.Pprof {
		adminOpts = append(adminOpts, admin.WithPprof())
	}
	adminSrv := &http.Server{Handler: admin.Handler(s.metrics, s.app.NotReady, adminOpts...), ReadHeaderTimeout: 10 * time.Second}
	workers, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	errc := make(chan error, 5)
	s.app.Start(workers, app.Hooks{Ready: s.setServing, PolicyReloaded: s.policyReloaded, Failed: func(err error) { errc <- err }})

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
	stopWorkers()
	s.shutdown(ctx, httpSrv, adminSrv)
	wg.Wait()
	s.log.Info("stopped")
	return runErr
}

// gateway is the REST handler over a connection to the in-memory gRPC server.
func (s *Server) gateway(ctx context.Context) (http.Handler, error) {
	limit := s.cfg.Limits.MaxMessageBytes
	conn, err := grpc.NewClient("passthrough:///tokenizer-internal",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.inmem.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limit+(1<<20)), grpc.MaxCallSendMsgSize(limit)),
	)
	if err != nil {
		return nil, fmt.Errorf("gateway: dial gRPC: %w", err)
	}
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	return gateway.New(ctx, conn, limit, gateway.WithRejections(s.auditRejection), gateway.WithMaxItems(s.cfg.Limits.MaxItems))
}

// shutdown drains REST first (its in-flight requests still need the gRPC server behind
// them), then gRPC, within the shutdown timeout.
func (s *Server) shutdown(ctx context.Context, httpSrv, adminSrv *http.Server) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
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
}
