package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/internal/config"
	"github.com/paypipe/paypipe/internal/shop"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/pspsim"
)

// embeddedPSP is the PSP simulator run in-process when PAYPIPE_PSP_URL is
// empty (the embedded default), on its own listener: paypipe still reaches it
// only over HTTP, as it would a real PSP. Its credentials are generated at
// start, so no secret has a default value anywhere.
type embeddedPSP struct {
	sim           *pspsim.Server
	srv           *http.Server
	url           string
	apiKey        string
	adminKey      string
	webhookSecret string
}

func randomToken(prefix string) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

func startEmbeddedPSP(pool *pgxpool.Pool, log *slog.Logger, cfg config.Config, webhookURL string) (*embeddedPSP, error) {
	addr := cfg.PSPSimAddr
	e := &embeddedPSP{}
	var err error
	for _, t := range []struct {
		dst    *string
		prefix string
	}{{&e.apiKey, "sk_sim_"}, {&e.adminKey, "ak_sim_"}, {&e.webhookSecret, "whsec_sim_"}} {
		if *t.dst, err = randomToken(t.prefix); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded PSP simulator: listen on %s (set PAYPIPE_PSPSIM_ADDR): %w", addr, err)
	}
	e.url = "http://" + ln.Addr().String()
	e.sim, err = pspsim.New(pspsim.Config{
		APIKey: e.apiKey, AdminKey: e.adminKey, PublicURL: e.url,
		WebhookURL: webhookURL, WebhookSecrets: []string{e.webhookSecret},
		// The simulator charges the fee the reconciler expects: the
		// contract both sides read from PAYPIPE_PSP_FEE_BPS.
		FeeBPS: int(cfg.PSPFeeBPS), NoFee: cfg.PSPFeeBPS == 0,
	}, pool, log.With("component", "pspsim"))
	if err != nil {
		ln.Close()
		return nil, err
	}
	e.srv = &http.Server{
		Handler: e.sim.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := e.srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("embedded PSP simulator stopped", "err", err)
		}
	}()
	log.Info("embedded PSP simulator listening", "url", e.url)
	return e, nil
}

func (e *embeddedPSP) stop(ctx context.Context) error {
	if err := e.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("embedded PSP simulator shutdown: %w", err)
	}
	return nil
}

// wantsEmbeddedPSP: the simulator runs in-process when no PSP URL is set and
// a selected service talks to the PSP (payment receives its webhooks,
// executor calls it).
func (a *app) wantsEmbeddedPSP() bool {
	if !a.opts.cfg.EmbeddedPSP() {
		return false
	}
	for _, s := range a.opts.services {
		if s.needsPSP || s.name == "payment" {
			return true
		}
	}
	return false
}

func (a *app) pspClient() (psp.Full, error) {
	cfg := a.opts.cfg
	base, key := cfg.PSPURL, cfg.PSPAPIKey
	if a.sim != nil {
		base, key = a.sim.url, a.sim.apiKey
	}
	if base == "" {
		return nil, nil // no selected service calls the PSP
	}
	c, err := psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: base, APIKey: key})
	if err != nil {
		return nil, fmt.Errorf("PSP client: %w", err)
	}
	return c, nil
}

// lazyHandler answers 503 until set: the HTTP listener starts before the
// services it serves are built.
type lazyHandler struct{ h atomic.Pointer[http.Handler] }

func (l *lazyHandler) set(h http.Handler) { l.h.Store(&h) }

func (l *lazyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := l.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "starting", http.StatusServiceUnavailable)
}

// routes is the application's HTTP surface: the services' API (if this
// process runs one) and nothing else; unknown paths are 404.
func (a *app) routes(api http.Handler, routes map[string]http.Handler, demo http.Handler) http.Handler {
	mux := http.NewServeMux()
	if api != nil {
		mux.Handle("/v1/", api)
	}
	for pattern, h := range routes {
		mux.Handle(pattern, h)
	}
	if demo != nil {
		mux.Handle("/demo", demo)
		mux.Handle("/demo/", demo)
	}
	return mux
}

// demoShop sets up the demo merchant and returns the shop's handler.
func (a *app) demoShop(ctx context.Context) (http.Handler, error) {
	key, sellers, err := shop.Setup(ctx, a.pool)
	if err != nil {
		return nil, err
	}
	base := shop.BaseURL(a.http.Addr())
	s, err := shop.New(shop.Config{APIBaseURL: base, APIKey: key, Sellers: sellers, Log: a.log})
	if err != nil {
		return nil, err
	}
	a.log.Info("demo shop", "url", base+"/demo")
	return s.Handler(), nil
}
