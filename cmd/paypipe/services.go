package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/internal/config"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/executor"
	"github.com/paypipe/paypipe/services/ledger"
	"github.com/paypipe/paypipe/services/payment"
	"github.com/paypipe/paypipe/services/payout"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/reconciler"
	"github.com/paypipe/paypipe/services/wallet"
)

// deps are what a service may need to run. Services get them at build
// time, after migrations and the broker connection, so a service package
// never reaches for global state.
type deps struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	cfg  config.Config
	psp  psp.Full
	reg  prometheus.Registerer
	// wakeRelay hints the service's own relay that rows were committed.
	wakeRelay func()
	// webhookSecrets verify the PSP's webhooks.
	webhookSecrets []string
	// executorCfg is the executor's configuration before wiring (zero: defaults).
	executorCfg executor.Config
}

// instance is a built service: its consumers, its background loops (nil if
// none) and its HTTP API (nil if none), mounted on paypipe's HTTP server.
type instance struct {
	consumers []outbox.ConsumerSpec
	run       func(context.Context) error
	handler   http.Handler
	// routes are HTTP handlers for single patterns (e.g. "POST
	// /v1/psp/payout_webhooks"), mounted next to handler, which takes the
	// rest of /v1/.
	routes map[string]http.Handler
}

// service is what the binary needs to know to run one service: its schema
// (migrations, outbox, inbox) and how to build it. Services are registered
// here rather than discovering themselves, so the binary's contents are
// explicit.
type service struct {
	name   string
	schema migrate.Schema
	build  func(deps) (instance, error)
	// needsPSP marks services that call the PSP, so the app knows to provide one.
	needsPSP bool
}

func (s service) store() outbox.Store { return s.schema.Store }

// registry lists every service the binary can run, in start-up order.
func registry() []service {
	return []service{
		{name: "payment", schema: payment.Schema(), build: func(d deps) (instance, error) {
			svc, err := payment.New(payment.Config{Webhook: payment.WebhookConfig{Secrets: d.webhookSecrets}}, d.pool, d.log)
			if err != nil {
				return instance{}, err
			}
			return instance{consumers: svc.Consumers(), run: svc.Run, handler: svc.Handler()}, nil
		}},
		{name: "executor", schema: executor.Schema(), needsPSP: true, build: func(d deps) (instance, error) {
			cfg := d.executorCfg
			cfg.WakeRelay, cfg.Registerer = d.wakeRelay, d.reg
			ex, err := executor.New(cfg, d.pool, d.psp, d.log)
			if err != nil {
				return instance{}, err
			}
			return instance{consumers: ex.Consumers(), run: ex.Run}, nil
		}},
		{name: "payout", schema: payout.Schema(), needsPSP: true, build: func(d deps) (instance, error) {
			svc, err := payout.New(payout.Config{
				Schedule: d.cfg.PayoutSchedule, ResolveAfter: d.cfg.PayoutResolveAfter, WebhookSecrets: d.webhookSecrets,
				WakeRelay: d.wakeRelay, Registerer: d.reg,
			}, d.pool, d.psp, d.log)
			if err != nil {
				return instance{}, err
			}
			return instance{consumers: svc.Consumers(), run: svc.Run,
				routes: map[string]http.Handler{"POST " + payout.WebhookPath: svc.Handler()}}, nil
		}},
		{name: "reconciler", schema: reconciler.Schema(), needsPSP: true, build: func(d deps) (instance, error) {
			r, err := reconciler.New(reconciler.Config{
				PSPFeeBPS: int(d.cfg.PSPFeeBPS), GraceDays: d.cfg.ReconGraceDays, ChunkLines: int(d.cfg.ReconChunkLines),
				ReportDir: d.cfg.ReconReportDir, RunAt: d.cfg.ReconAt, Registerer: d.reg,
			}, d.pool, d.psp, d.psp, d.log)
			if err != nil {
				return instance{}, err
			}
			return instance{consumers: r.Consumers(), run: r.Nightly}, nil
		}},
		{name: "ledger", schema: ledger.Schema(), build: func(d deps) (instance, error) {
			return instance{consumers: ledger.Consumers(ledger.WithLogger(d.log))}, nil
		}},
		{name: "wallet", schema: wallet.Schema(), build: func(d deps) (instance, error) {
			return instance{consumers: wallet.Consumers(wallet.WithLogger(d.log))}, nil
		}},
	}
}

// selectServices returns the named services, or all of them for no names.
func selectServices(names []string) ([]service, error) {
	all := registry()
	if len(names) == 0 {
		return all, nil
	}
	byName := map[string]service{}
	var known []string
	for _, s := range all {
		byName[s.name] = s
		known = append(known, s.name)
	}
	var out []service
	seen := map[string]bool{}
	for _, n := range names {
		s, ok := byName[n]
		if !ok {
			return nil, usagef("unknown service %q (known: %s)", n, strings.Join(known, ", "))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, s)
		}
	}
	return out, nil
}

func schemasOf(svcs []service) []migrate.Schema {
	out := make([]migrate.Schema, len(svcs))
	for i, s := range svcs {
		out[i] = s.schema
	}
	return out
}

func serviceNames(svcs []service) string {
	names := make([]string, len(svcs))
	for i, s := range svcs {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// storeFor picks the stores of --schema (all services' when empty).
func storeFor(schema string) ([]outbox.Store, error) {
	var out []outbox.Store
	var known []string
	for _, s := range registry() {
		known = append(known, s.store().Schema())
		if schema == "" || s.store().Schema() == schema {
			out = append(out, s.store())
		}
	}
	if len(out) == 0 {
		return nil, usagef("unknown schema %q (known: %s)", schema, strings.Join(known, ", "))
	}
	return out, nil
}
