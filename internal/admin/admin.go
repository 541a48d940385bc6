// Package admin is the admin port: /metrics (the service's private Prometheus
// registry), /healthz (the process is up), /readyz (the service can serve) and, when
// asked for, /debug/pprof/.
package admin

import (
	"context"
	"net/http"
	"net/http/pprof"
	"runtime"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Option adjusts Handler.
type Option func(*http.ServeMux)

// WithPprof serves the Go profiler under /debug/pprof/ and turns on block and mutex
// profiling. Profiles hold stacks, counts and durations, never request data; the admin
// port is for operators only.
func WithPprof() Option {
	return func(mux *http.ServeMux) {
		// Blocking events of 10µs and more are all recorded, shorter ones sampled.
		runtime.SetBlockProfileRate(10_000)
		runtime.SetMutexProfileFraction(100)
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
}

// Handler serves /metrics, /healthz and /readyz; notReady says why the service cannot
// serve now, or "" (PostgreSQL answers, the schema is current, the data keys are
// loaded and the key provider answers).
func Handler(m *Metrics, notReady func(context.Context) string, opts ...Option) http.Handler {
	mux := http.NewServeMux()
	for _, o := range opts {
		o(mux)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := notReady(r.Context()); reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
