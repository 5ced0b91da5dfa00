package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/services/pspsim"
)

// pspsimOptions are the flags of `paypipe pspsim`.
type pspsimOptions struct {
	addr, apiKey, adminKey, webhookURL, secrets, publicURL string
	hostedTTL, delayedWebhook, webhookMaxAge               time.Duration
	faults                                                 pspsim.Faults
	hangFor, latency                                       time.Duration
	payoutWebhookURL                                       string
	payoutDelay                                            time.Duration
	feeBPS                                                 int
}

// pspsimEnv lists, per flag, the environment variable read when the flag is
// not given. Secrets are better passed this way: flags show in ps.
var pspsimEnv = []struct{ flag, env string }{
	{"addr", "PSPSIM_ADDR"},
	{"api-key", "PSPSIM_API_KEY"},
	{"admin-key", "PSPSIM_ADMIN_KEY"},
	{"webhook-url", "PSPSIM_WEBHOOK_URL"},
	{"webhook-secrets", "PSPSIM_WEBHOOK_SECRETS"},
	{"public-url", "PSPSIM_PUBLIC_URL"},
	{"hosted-ttl", "PSPSIM_HOSTED_TTL"},
	{"delayed-webhook", "PSPSIM_DELAYED_WEBHOOK"},
	{"webhook-max-age", "PSPSIM_WEBHOOK_MAX_AGE"},
	{"seed", "PSPSIM_SEED"},
	{"decline-rate", "PSPSIM_DECLINE_RATE"},
	{"fail-before-charge-rate", "PSPSIM_FAIL_BEFORE_CHARGE_RATE"},
	{"fail-after-charge-rate", "PSPSIM_FAIL_AFTER_CHARGE_RATE"},
	{"hang-after-charge-rate", "PSPSIM_HANG_AFTER_CHARGE_RATE"},
	{"hang-for", "PSPSIM_HANG_FOR"},
	{"latency", "PSPSIM_LATENCY"},
	{"duplicate-webhook-rate", "PSPSIM_DUPLICATE_WEBHOOK_RATE"},
	{"out-of-order-webhooks", "PSPSIM_OUT_OF_ORDER_WEBHOOKS"},
	{"drop-webhook-rate", "PSPSIM_DROP_WEBHOOK_RATE"},
	{"payout-webhook-url", "PSPSIM_PAYOUT_WEBHOOK_URL"},
	{"payout-delay", "PSPSIM_PAYOUT_DELAY"},
	{"fail-after-refund-rate", "PSPSIM_FAIL_AFTER_REFUND_RATE"},
	{"hang-after-refund-rate", "PSPSIM_HANG_AFTER_REFUND_RATE"},
	{"fail-after-payout-rate", "PSPSIM_FAIL_AFTER_PAYOUT_RATE"},
	{"hang-after-payout-rate", "PSPSIM_HANG_AFTER_PAYOUT_RATE"},
	{"payout-failure-rate", "PSPSIM_PAYOUT_FAILURE_RATE"},
}

func newPSPSimCmd(e *env) *cobra.Command {
	o := pspsimOptions{}
	cmd := &cobra.Command{
		Use:   "pspsim",
		Short: "Run the PSP simulator: a stand-in payment provider with hosted pages, signed webhooks and faults",
		Long: `pspsim runs paypipe's payment service provider simulator as its own process until
SIGINT or SIGTERM: an HTTP API in the shape of Stripe's PaymentIntents (/v1/*),
hosted payment pages (/pay/*), signed webhooks with retries, and faults on demand
(/admin/*). It keeps its state in the pspsim schema of DATABASE_URL, migrated at
start, and shares nothing else with paypipe. See services/pspsim for the API.

Every flag can also be set through the environment variable in brackets; the flag
wins. Pass the keys and secrets through the environment: flags show in ps.

Test cards on the hosted page: 4242424242424242 succeeds, 4000000000000002 is
declined, 4000000000009995 has insufficient funds, 4000000000000077 succeeds with a
delayed webhook. Direct mode: pm_card_visa, pm_card_declined,
pm_card_insufficient_funds, pm_card_delayed_webhook.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applyPSPSimEnv(cmd, e.getenv); err != nil {
				return err
			}
			if o.apiKey == "" {
				return usagef("an API key is required: --api-key or PSPSIM_API_KEY")
			}
			if splitSecrets(o.secrets) == nil {
				return usagef("a webhook secret is required: --webhook-secrets or PSPSIM_WEBHOOK_SECRETS (comma-separated during a rotation)")
			}
			if o.latency < 0 || o.hangFor < 0 {
				return usagef("--latency and --hang-for must not be negative")
			}
			o.faults.HangFor = pspsim.Duration(o.hangFor)
			o.faults.LatencyMS = int(o.latency.Milliseconds())
			return runPSPSim(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:8090", "listen address [PSPSIM_ADDR]")
	f.StringVar(&o.apiKey, "api-key", "", "API key callers send as a Bearer token (required) [PSPSIM_API_KEY]")
	f.StringVar(&o.adminKey, "admin-key", "", "admin key for /admin/*; empty disables the admin API [PSPSIM_ADMIN_KEY]")
	f.StringVar(&o.webhookURL, "webhook-url", "http://127.0.0.1:8080/v1/psp/webhooks", "where webhooks are posted [PSPSIM_WEBHOOK_URL]")
	f.StringVar(&o.secrets, "webhook-secrets", "", "webhook signing secrets, comma-separated, each at least 16 characters (required) [PSPSIM_WEBHOOK_SECRETS]")
	f.StringVar(&o.publicURL, "public-url", "", "base URL buyers reach this server at (default http://<listen address>) [PSPSIM_PUBLIC_URL]")
	f.DurationVar(&o.hostedTTL, "hosted-ttl", time.Hour, "unpaid hosted payments fail as expired after this [PSPSIM_HOSTED_TTL]")
	f.DurationVar(&o.delayedWebhook, "delayed-webhook", 30*time.Second, "how late pm_card_delayed_webhook's final webhook is sent [PSPSIM_DELAYED_WEBHOOK]")
	f.DurationVar(&o.webhookMaxAge, "webhook-max-age", 72*time.Hour, "a webhook not acknowledged by then is dead [PSPSIM_WEBHOOK_MAX_AGE]")
	f.Uint64Var(&o.faults.Seed, "seed", 0, "seed of the fault decisions: the same seed and workload give the same faults [PSPSIM_SEED]")
	f.Float64Var(&o.faults.DeclineRate, "decline-rate", 0, "share of charges declined (0 to 1) [PSPSIM_DECLINE_RATE]")
	f.Float64Var(&o.faults.FailBeforeChargeRate, "fail-before-charge-rate", 0, "share of creates/confirms answered 500 before doing anything [PSPSIM_FAIL_BEFORE_CHARGE_RATE]")
	f.Float64Var(&o.faults.FailAfterChargeRate, "fail-after-charge-rate", 0, "share answered 500 after the charge committed [PSPSIM_FAIL_AFTER_CHARGE_RATE]")
	f.Float64Var(&o.faults.HangAfterChargeRate, "hang-after-charge-rate", 0, "share whose response is held for --hang-for after the charge committed [PSPSIM_HANG_AFTER_CHARGE_RATE]")
	f.DurationVar(&o.hangFor, "hang-for", 15*time.Second, "how long a hung response is held [PSPSIM_HANG_FOR]")
	f.DurationVar(&o.latency, "latency", 0, "added to every create and confirm [PSPSIM_LATENCY]")
	f.Float64Var(&o.faults.DuplicateWebhookRate, "duplicate-webhook-rate", 0, "share of webhooks sent 2 or 3 times [PSPSIM_DUPLICATE_WEBHOOK_RATE]")
	f.BoolVar(&o.faults.OutOfOrderWebhooks, "out-of-order-webhooks", false, "send each batch of webhooks in reverse order [PSPSIM_OUT_OF_ORDER_WEBHOOKS]")
	f.Float64Var(&o.faults.DropWebhookRate, "drop-webhook-rate", 0, "share of webhooks never sent [PSPSIM_DROP_WEBHOOK_RATE]")
	f.StringVar(&o.payoutWebhookURL, "payout-webhook-url", "", "where payout webhooks are posted (default: --webhook-url's path replaced by /v1/psp/payout_webhooks) [PSPSIM_PAYOUT_WEBHOOK_URL]")
	f.DurationVar(&o.payoutDelay, "payout-delay", 2*time.Second, "how long a payout stays pending before it is paid or fails [PSPSIM_PAYOUT_DELAY]")
	f.IntVar(&o.feeBPS, "fee-bps", -1, "processing fee per charge in basis points (default: PAYPIPE_PSP_FEE_BPS, 290)")
	f.Float64Var(&o.faults.FailAfterRefundRate, "fail-after-refund-rate", 0, "share of refunds answered 500 after they committed [PSPSIM_FAIL_AFTER_REFUND_RATE]")
	f.Float64Var(&o.faults.HangAfterRefundRate, "hang-after-refund-rate", 0, "share of refunds whose answer is held for --hang-for [PSPSIM_HANG_AFTER_REFUND_RATE]")
	f.Float64Var(&o.faults.FailAfterPayoutRate, "fail-after-payout-rate", 0, "share of payouts answered 500 after they committed [PSPSIM_FAIL_AFTER_PAYOUT_RATE]")
	f.Float64Var(&o.faults.HangAfterPayoutRate, "hang-after-payout-rate", 0, "share of payouts whose answer is held for --hang-for [PSPSIM_HANG_AFTER_PAYOUT_RATE]")
	f.Float64Var(&o.faults.PayoutFailureRate, "payout-failure-rate", 0, "share of payouts that fail (account_closed) instead of being paid [PSPSIM_PAYOUT_FAILURE_RATE]")
	cmd.AddCommand(newPSPSimSettlementCmd(e))
	return cmd
}

// pspFee turns --fee-bps (or, when not given, PAYPIPE_PSP_FEE_BPS) into the
// simulator's fee settings; 0 is a PSP without fees.
func pspFee(flag int, fromEnv int64) (bps int, noFee bool, err error) {
	v := int64(flag)
	if flag < 0 {
		v = fromEnv
	}
	if v < 0 || v > 10000 {
		return 0, false, usagef("--fee-bps %d: want 0 to 10000", v)
	}
	return int(v), v == 0, nil
}

// newPSPSimSettlementCmd is `paypipe pspsim settlement`: a day's settlement
// file, written from the simulator's schema directly (no running simulator
// needed), as the simulator serves it at GET /v1/settlements/{date}.
func newPSPSimSettlementCmd(e *env) *cobra.Command {
	var date, out string
	cmd := &cobra.Command{
		Use:   "settlement --date YYYY-MM-DD [--out DIR]",
		Short: "Write the simulator's settlement file of one day (UTC) into a folder",
		Long: `settlement writes settlement-YYYY-MM-DD.csv, the PSP simulator's settlement file of
one UTC day (format: docs/settlement-file.md), into --out, from the pspsim schema of
DATABASE_URL. The file is written to a temporary name and renamed, so a reader never
sees half of it. A day after today is refused.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			day, err := time.Parse(time.DateOnly, date)
			if err != nil || day.Format(time.DateOnly) != date {
				return usagef("--date %q: want YYYY-MM-DD", date)
			}
			if st, err := os.Stat(out); err != nil || !st.IsDir() {
				return usagef("--out %q: want an existing directory", out)
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			log := e.logger(cfg.LogLevel).With("service", "pspsim")
			pool, err := openDB(cmd.Context(), cfg, "paypipe-pspsim-settlement")
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := migrate.Up(cmd.Context(), pool, log, pspsim.Schema()); err != nil {
				return err
			}
			path, err := pspsim.WriteSettlementFile(cmd.Context(), pool, day, out)
			if errors.Is(err, pspsim.ErrFutureDay) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&date, "date", "", "the UTC day, YYYY-MM-DD (required)")
	cmd.Flags().StringVar(&out, "out", ".", "the directory to write the file into")
	_ = cmd.MarkFlagRequired("date")
	return cmd
}

// applyPSPSimEnv sets each flag not given on the command line from its
// environment variable, through the flag's own parser.
func applyPSPSimEnv(cmd *cobra.Command, getenv func(string) string) error {
	for _, fe := range pspsimEnv {
		v := strings.TrimSpace(getenv(fe.env))
		if v == "" || cmd.Flags().Changed(fe.flag) {
			continue
		}
		// Only numeric, boolean and duration flags can fail to parse, so
		// no key or secret is ever echoed here.
		if err := cmd.Flags().Set(fe.flag, v); err != nil {
			return usagef("%s=%q: %v", fe.env, v, err)
		}
	}
	return nil
}

func splitSecrets(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runPSPSim(ctx context.Context, e *env, o pspsimOptions) error {
	cfg, err := e.config()
	if err != nil {
		return err
	}
	log := e.logger(cfg.LogLevel).With("service", "pspsim")
	pool, err := openDB(ctx, cfg, "paypipe-pspsim")
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrate.Up(ctx, pool, log, pspsim.Schema()); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("pspsim: listen on %s: %w", o.addr, err)
	}
	defer ln.Close()
	public := o.publicURL
	if public == "" {
		public = "http://" + ln.Addr().String()
	}
	feeBPS, noFee, err := pspFee(o.feeBPS, int64(cfg.PSPFeeBPS))
	if err != nil {
		return err
	}
	srv, err := pspsim.New(pspsim.Config{
		PayoutWebhookURL: o.payoutWebhookURL,
		PayoutDelay:      o.payoutDelay,
		FeeBPS:           feeBPS,
		NoFee:            noFee,
		Seed:             o.faults.Seed,
		APIKey:           o.apiKey,
		AdminKey:         o.adminKey,
		PublicURL:        public,
		WebhookURL:       o.webhookURL,
		WebhookSecrets:   splitSecrets(o.secrets),
		WebhookMaxAge:    o.webhookMaxAge,
		DelayedWebhook:   o.delayedWebhook,
		HostedTTL:        o.hostedTTL,
		Faults:           o.faults,
	}, pool, log)
	if err != nil {
		return usageError{err}
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// Longer than any hang fault's hold would be pointless: the client
		// has gone by then.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(runCtx) })
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("pspsim listening", "addr", ln.Addr().String(), "public_url", public, "webhook_url", o.webhookURL,
		"admin", o.adminKey != "", "seed", o.faults.Seed)
	fmt.Fprintf(e.stdout, "pspsim: listening on http://%s (pages at %s/pay/…); webhooks → %s\n", ln.Addr(), public, o.webhookURL)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	// Drain in-flight requests (a held "hang" response is cut after the
	// grace period), then stop the loops: a webhook pass in progress records
	// what it sent before returning.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	stopRun()
	wg.Wait()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("pspsim: serve: %w", serveErr)
	}
	log.Info("pspsim stopped")
	return nil
}
