// Package httpserver serves paypipe's operational endpoints: Prometheus
// metrics, liveness and readiness.
//
//   - /metrics exposes one prometheus.Registry handed in by the caller, never
//     the global default registry, so tests and in-process demos running
//     several apps in one process do not collide on metric registration.
//   - /healthz answers 200 while the process can serve HTTP at all: it checks
//     nothing else, because a liveness probe that fails on a database outage
//     makes the orchestrator restart healthy processes in a loop.
//   - /readyz answers 200 only when every readiness check passes (PostgreSQL
//     answers a ping; the NATS connection is up and JetStream answers an
//     account-info request), each bounded by CheckTimeout, and 503 with a JSON
//     body naming what is down otherwise. Checks run concurrently, so one hung
//     dependency costs CheckTimeout, not the sum.
//
// The server sets every timeout http.Server leaves at "none" (slow-loris
// protection), binds its listener in Start so a bad address fails start-up
// instead of a goroutine, and Shutdown drains in-flight requests.
package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// CheckTimeout bounds each readiness check.
const CheckTimeout = 2 * time.Second

// Check is one readiness condition. Fn returns nil when the dependency is usable.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Config configures a Server.
type Config struct {
	// Addr is the listen address, e.g. 127.0.0.1:8080; port 0 picks a free one.
	Addr string
	// Registry is what /metrics exposes. Required.
	Registry *prometheus.Registry
	// Checks decide /readyz.
	Checks []Check
	// App, if set, serves every path the operational routes do not (the
	// payment API, the demo shop).
	App    http.Handler
	Logger *slog.Logger
}

// Server is the operational HTTP server.
type Server struct {
	cfg  Config
	log  *slog.Logger
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error // set before done closes
}

// New validates cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("httpserver: Registry is required")
	}
	if cfg.Addr == "" {
		return nil, errors.New("httpserver: Addr is required")
	}
	seen := map[string]bool{}
	for _, c := range cfg.Checks {
		if c.Name == "" || c.Fn == nil || seen[c.Name] {
			return nil, fmt.Errorf("httpserver: check %q: needs a unique name and a function", c.Name)
		}
		seen[c.Name] = true
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "http"), done: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A scrape of a large registry can take a while; 30s is Prometheus's
		// own upper bound for scrape timeouts in practice.
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Handler returns the routes, for tests that want httptest.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{
		// Scrape errors are counted on the same registry instead of the global one.
		Registry:            s.cfg.Registry,
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4,
		Timeout:             20 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.cfg.App != nil {
		mux.Handle("/", s.cfg.App)
	}
	return mux
}

// Start binds the listener and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("httpserver: listen on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
			s.log.Error("http server stopped", "err", err)
		}
	}()
	s.log.Info("http server listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the bound address (useful with port 0); empty before Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Done is closed when the server stops serving; Err then tells why.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is the error that stopped the server, nil after a clean Shutdown.
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Shutdown stops accepting connections and waits, until ctx ends, for
// in-flight requests; then it closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	return err
}

// ReadyResponse is /readyz's body.
type ReadyResponse struct {
	Status string `json:"status"` // "ready" or "unavailable"
	// Down names each failed check with its error.
	Down map[string]string `json:"down,omitempty"`
	// OK lists the checks that passed.
	OK []string `json:"ok,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	res := ReadyResponse{Status: "ready"}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range s.cfg.Checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
			defer cancel()
			err := runCheck(ctx, c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if res.Down == nil {
					res.Down = map[string]string{}
				}
				res.Down[c.Name] = err.Error()
				return
			}
			res.OK = append(res.OK, c.Name)
		})
	}
	wg.Wait()
	sort.Strings(res.OK)
	code := http.StatusOK
	if len(res.Down) > 0 {
		res.Status = "unavailable"
		code = http.StatusServiceUnavailable
		s.log.Warn("not ready", "down", res.Down)
	}
	writeJSON(w, code, res)
}

// runCheck enforces the timeout even on a check that ignores its context.
func runCheck(ctx context.Context, c Check) error {
	errc := make(chan error, 1)
	go func() { errc <- c.Fn(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %s", CheckTimeout)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// PostgresCheck passes when the pool can run a round trip.
func PostgresCheck(pool *pgxpool.Pool) Check {
	return Check{Name: "postgres", Fn: func(ctx context.Context) error { return pool.Ping(ctx) }}
}

// NATSCheck passes when nc is connected and JetStream answers an account
// info request: a connected client whose server has JetStream disabled or
// without quorum cannot take publishes.
func NATSCheck(nc *nats.Conn) Check {
	return Check{Name: "nats", Fn: func(ctx context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected (%s)", strings.ToLower(nc.Status().String()))
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		return nil
	}}
}
