package payment

import (
	"context"
	"embed"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/psp"
)

// Store is the payment schema's outbox and inbox.
var Store = outbox.MustStore("payment")

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the payment service's migrations: the outbox and inbox tables
// (version 1), then migrations/*.sql.
func Schema() migrate.Schema {
	return migrate.Embedded(Store, migrations)
}

// Service is the payment service: its HTTP API (Handler) and its background
// loops (Run). It holds no state of its own besides configuration: every
// request and every loop works through PostgreSQL, so any number of
// replicas can serve the same database.
type Service struct {
	cfg    Config
	pool   *pgxpool.Pool
	store  outbox.Store
	log    *slog.Logger
	events *eventSide
}

// New validates cfg and returns a Service on pool. The schema must be
// migrated (Schema) before requests arrive.
func New(cfg Config, pool *pgxpool.Pool, log *slog.Logger) (*Service, error) {
	if pool == nil {
		return nil, errors.New("payment: New needs a pool")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("service", "payment")
	if len(cfg.Webhook.Secrets) == 0 {
		log.Warn("no PSP webhook secrets configured: every webhook will be refused")
	}
	return &Service{cfg: cfg, pool: pool, store: Store, log: log,
		events: &eventSide{store: Store, log: log, now: time.Now}}, nil
}

// Consumers are the payment service's durable consumers: executor's reports
// of the PSP's answers to checkouts and refunds, the ledger's and wallet's
// confirmations that complete orders, the payout service's changes (the
// GET /v1/payouts projection) and the reconciler's confirmed charges. The
// binary runs them on an outbox.Runner with Store.
func (s *Service) Consumers() []outbox.ConsumerSpec { return s.events.consumers() }

// webhook receives PSP webhooks (not authenticated by API key: by signature).
func (s *Service) webhook(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.Webhook.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(CodeRequestTooLarge, "a webhook body may have at most %d bytes", s.cfg.Webhook.MaxBodyBytes)
		}
		return errorf(CodeWebhookMalformed, "could not read the body")
	}
	res := s.events.receiveWebhook(r.Context(), s.pool, s.cfg.Webhook, r.Header.Get(psp.SignatureHeader), body)
	if res.status >= 400 {
		e := errorf(res.problem, "%s", res.detail)
		if res.problem == CodeServiceUnavailable {
			e.retryAfter = 5
		}
		return e
	}
	return writeJSON(w, http.StatusOK, map[string]any{"received": true, "duplicate": res.duplicate, "outcome": res.outcome})
}

// Run runs the service's background loops until ctx ends: the idempotency
// key sweeper. A loop that fails is logged and retried by the loop itself;
// Run returns nil once ctx is done and every loop has stopped.
func (s *Service) Run(ctx context.Context) error {
	loops := []func(context.Context) error{
		newKeySweeper(s).Run,
	}
	var wg sync.WaitGroup
	errs := make([]error, len(loops))
	for i, run := range loops {
		wg.Go(func() { errs[i] = run(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
