package pspsim

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
)

// store names the pspsim schema. Its outbox and inbox tables exist (every
// paypipe schema gets them) but are unused: see doc.go.
var store = outbox.MustStore("pspsim")

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the simulator's migrations: the standard outbox and inbox
// tables, then migrations/*.sql.
func Schema() migrate.Schema {
	return migrate.Embedded(store, migrations)
}

// Server is the simulated PSP: an HTTP API, hosted payment pages, and the
// background loops (Run) that deliver webhooks and expire unpaid payments.
type Server struct {
	cfg     Config
	pool    *pgxpool.Pool
	log     *slog.Logger
	faults  *faultState
	hc      *http.Client
	handler http.Handler
	wake    chan struct{}
	csp     string // the hosted page's Content-Security-Policy, less form-action
}

// New validates cfg and returns a Server on pool, whose pspsim schema must be
// migrated (migrate.Up with Schema()).
func New(cfg Config, pool *pgxpool.Pool, log *slog.Logger) (*Server, error) {
	if pool == nil {
		return nil, errors.New("pspsim: a pool is required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:    cfg,
		pool:   pool,
		log:    log.With("component", "pspsim"),
		faults: newFaultState(cfg.Faults),
		wake:   make(chan struct{}, 1),
		hc: &http.Client{
			Timeout: cfg.WebhookTimeout,
			// A webhook endpoint that redirects is misconfigured; following
			// it would also let it point deliveries anywhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{
				// No Proxy: webhooks go straight to WebhookURL, even with HTTP_PROXY set.
				Proxy:               nil,
				MaxIdleConnsPerHost: cfg.WebhookConcurrency,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: cfg.WebhookTimeout,
			},
		},
		csp: pageCSP(),
	}
	s.handler = s.routes()
	return s, nil
}

// Handler serves the API (/v1/*), the hosted pages (/pay/*), the admin
// endpoints (/admin/*) and /healthz.
func (s *Server) Handler() http.Handler { return s.handler }

// Run delivers webhooks, expires unpaid hosted payments and pays due payouts until ctx ends,
// then returns nil. Several Servers may Run on one database: both loops
// claim rows with FOR UPDATE SKIP LOCKED.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.runSender(ctx) })
	wg.Go(func() { s.runExpiry(ctx) })
	wg.Go(func() { s.runPayouts(ctx) })
	wg.Wait()
	return nil
}

// Faults returns the faults in force and the counts injected so far.
func (s *Server) Faults() FaultsView { return s.faults.view() }

// SetFaults replaces the faults in force and restarts their random sequence
// from f.Seed.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.faults.set(f)
	return nil
}

func (s *Server) wakeSender() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Server) routes() http.Handler {
	v1 := http.NewServeMux()
	v1.HandleFunc("POST /v1/payments", s.handleCreate)
	v1.HandleFunc("GET /v1/payments", s.handleList)
	v1.HandleFunc("GET /v1/payments/{id}", s.handleGet)
	v1.HandleFunc("POST /v1/payments/{id}/confirm", s.handleConfirm)
	v1.HandleFunc("POST /v1/refunds", s.handleCreateRefund)
	v1.HandleFunc("GET /v1/refunds", s.handleListRefunds)
	v1.HandleFunc("GET /v1/refunds/{id}", s.handleGetRefund)
	v1.HandleFunc("POST /v1/payouts", s.handleCreatePayout)
	v1.HandleFunc("GET /v1/payouts", s.handleListPayouts)
	v1.HandleFunc("GET /v1/payouts/{id}", s.handleGetPayout)
	v1.HandleFunc("GET /v1/settlements/{date}", s.handleSettlement)
	v1.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, problemf(codeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})

	admin := http.NewServeMux()
	admin.HandleFunc("GET /admin/faults", s.handleGetFaults)
	admin.HandleFunc("POST /admin/faults", s.handleSetFaults)
	admin.HandleFunc("GET /admin/charges", s.handleCharges)
	admin.HandleFunc("GET /admin/webhooks", s.handleWebhookEvents)
	admin.HandleFunc("GET /admin/refunds", s.handleAdminRefunds)
	admin.HandleFunc("GET /admin/payouts", s.handleAdminPayouts)
	admin.HandleFunc("GET /admin/settlement_discrepancies", s.handleListDiscrepancies)
	admin.HandleFunc("POST /admin/settlement_discrepancies", s.handleAddDiscrepancy)
	admin.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, problemf(codeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})

	mux := http.NewServeMux()
	mux.Handle("/v1/", s.auth(s.cfg.APIKey, v1))
	mux.Handle("/admin/", s.auth(s.cfg.AdminKey, admin))
	mux.HandleFunc("GET /pay/{token}", s.handlePage)
	mux.HandleFunc("POST /pay/{token}", s.handlePay)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.pool.Ping(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "postgres": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return mux
}

// auth requires Authorization: Bearer <key>, compared in constant time. An
// empty key (the admin endpoints without Config.AdminKey) refuses everyone.
func (s *Server) auth(key string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || key == "" || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pspsim"`)
			s.writeError(w, r, problemf(codeUnauthorized, "send Authorization: Bearer <API key>"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// newID returns prefix + 26 lower-case base32 characters (128 random bits).
func newID(prefix string) string { return prefix + strings.ToLower(rand.Text()) }

// sleepCtx waits d or until ctx ends; it reports whether the wait completed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
