// Package monitor serves Ferry's HTTP endpoints for operators: Prometheus
// metrics on /metrics, liveness on /healthz, readiness on /readyz (the
// start done, and every check components add with AddReadinessCheck), and the
// JSON status routes that components register (the bridges' /bridges).
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Route is an HTTP route a component serves through the monitor.
type Route struct {
	Pattern string // as http.ServeMux takes it, e.g. "GET /bridges"
	Handler http.Handler
}

// Off, as the address, disables the HTTP listener.
const Off = "off"

// NewRegistry is a Prometheus registry with the Go runtime's and the
// process's collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Server serves the monitoring endpoints.
type Server struct {
	mux    *http.ServeMux
	srv    *http.Server
	logger *slog.Logger
	ready  atomic.Bool
	addr   atomic.Value // string, once listening
	done   chan struct{}

	mu       sync.Mutex
	checks   []readinessCheck
	attached *attachment // the part of the process that comes and goes, or nil
}

// attachment is what Attach added: a part of the process that runs only
// at times (a replicated broker's serving half, which runs while the
// broker is its group's master).
type attachment struct {
	reg    prometheus.Gatherer
	mux    *http.ServeMux
	checks []readinessCheck
}

// readinessCheck is a component's answer to whether it is ready.
type readinessCheck struct {
	name  string
	check func() error
}

// AddReadinessCheck makes /readyz ask check too, under name: while check
// returns an error, /readyz answers 503 naming it (a listener that cannot
// accept connections, say). check is called on every /readyz request, so
// it must be quick and safe for concurrent use.
func (s *Server) AddReadinessCheck(name string, check func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, readinessCheck{name, check})
}

// notReady is what keeps /readyz from ok: the start not done, or the
// failing checks, one per line; "" when ready.
func (s *Server) notReady() string {
	if !s.ready.Load() {
		return "starting"
	}
	s.mu.Lock()
	checks := slices.Clone(s.checks)
	if a := s.attached; a != nil {
		checks = append(checks, a.checks...)
	}
	s.mu.Unlock()
	var b strings.Builder
	for _, c := range checks {
		if err := c.check(); err != nil {
			fmt.Fprintf(&b, "%s: %v\n", c.name, err)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// New makes a server of the registry's metrics and the routes; nothing
// listens before Serve.
func New(reg *prometheus.Registry, routes []Route, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{mux: http.NewServeMux(), logger: logger, done: make(chan struct{})}
	gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		s.mu.Lock()
		a := s.attached
		s.mu.Unlock()
		if a == nil {
			return reg.Gather()
		}
		return prometheus.Gatherers{reg, a.reg}.Gather()
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{Registry: reg}))
	// Routes of an attached part: the mux cannot forget a route, so they
	// are served from a mux of their own while attached.
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		a := s.attached
		s.mu.Unlock()
		if a == nil {
			http.NotFound(w, r)
			return
		}
		a.mux.ServeHTTP(w, r)
	})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := s.notReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	for _, r := range routes {
		if err := register(s.mux, r); err != nil {
			return nil, err
		}
	}
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Attach serves a part of the process that comes and goes, until the
// returned detach is called: the metrics of reg beside the registry's, the
// routes, and the readiness checks. One part at a time: attaching another
// replaces it.
func (s *Server) Attach(reg prometheus.Gatherer, routes []Route, checks map[string]func() error) (detach func(), err error) {
	a := &attachment{reg: reg, mux: http.NewServeMux()}
	for _, r := range routes {
		if err := register(a.mux, r); err != nil {
			return nil, err
		}
	}
	for name, c := range checks {
		a.checks = append(a.checks, readinessCheck{name, c})
	}
	slices.SortFunc(a.checks, func(x, y readinessCheck) int { return strings.Compare(x.name, y.name) })
	s.mu.Lock()
	s.attached = a
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.attached == a {
			s.attached = nil
		}
		s.mu.Unlock()
	}, nil
}

// register adds r to mux, turning the mux's panic on a bad or duplicate
// pattern into an error.
func register(mux *http.ServeMux, r Route) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("monitor: route %q: %v", r.Pattern, p)
		}
	}()
	mux.Handle(r.Pattern, r.Handler)
	return nil
}

// Handler is the server's routes, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.mux }

// SetReady says whether /readyz answers ok.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Serve serves on ln until Close.
func (s *Server) Serve(ln net.Listener) {
	defer close(s.done)
	s.addr.Store(ln.Addr().String())
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.logger.Error("monitor: serving HTTP", "err", err)
	}
}

// Addr is the address listened on, "" before Serve.
func (s *Server) Addr() string {
	a, _ := s.addr.Load().(string)
	return a
}

// Close stops serving, letting requests in progress finish within ctx.
func (s *Server) Close(ctx context.Context) error {
	s.ready.Store(false)
	err := s.srv.Shutdown(ctx)
	if s.Addr() != "" {
		<-s.done
	}
	return err
}
