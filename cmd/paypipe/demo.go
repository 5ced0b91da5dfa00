package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/internal/config"
	"github.com/paypipe/paypipe/services/payment"
)

// The demo is split by step: demo.go runs it (set-up, the steps in order,
// the verdict), demo_api.go is its HTTP client (merchant API, hosted page,
// simulator admin), demo_checkouts.go steps 1 to 3, demo_trail.go step 4,
// demo_money.go step 5, demo_payout.go steps 6 and 7 and demo_verify.go
// step 8.

type demoOptions struct {
	timeout  time.Duration
	keepData bool
}

func newDemoCmd(e *env) *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the money flow end to end in-process: checkouts, PSP, ledger, wallets, pay-outs, reconciliation, and the checks",
		Long: `demo starts every service in-process exactly as serve would (same app), with its
own embedded nats-server and its own embedded PSP simulator, in a fresh directory
under PAYPIPE_DATA_DIR (removed at exit unless --keep-data), against DATABASE_URL
(migrations applied; earlier data is kept, and only this run's objects are shown).
NATS_URL and PAYPIPE_PSP_* are ignored, so the demo never touches a deployment's
broker or PSP; the payout schedule and the nightly reconciliation are off (the
demo runs both itself). The HTTP servers listen on 127.0.0.1 on ports the kernel picks
unless PAYPIPE_HTTP_ADDR / PAYPIPE_PSPSIM_ADDR say otherwise. Do not point it at
a database a running "paypipe serve" uses: that serve's relays would publish the
demo's events to its own broker.

Through the payment API, as a merchant would, it creates sellers and checkouts:
a direct card payment split over two sellers, a declined card, amounts in JPY (no
minor unit) and KWD (three decimals), a hosted checkout paid by submitting the
PSP's card form as a browser would, and one checkout posted twice with the same
Idempotency-Key. It waits until every checkout is final, then prints one
checkout's event trail (stream messages and the inbox rows of the consumers that
applied them), the ledger entries, the sellers' balances and the PSP's charge log.
Then the pay-out: it fulfils the paid orders, refunds half of one, runs the
payouts (twice: the second run requests nothing) and waits for the PSP's payout
webhooks; and the night's work: it reconciles the PSP's settlement file of the
day against the ledger (and runs it again). Last, the invariant checks of
internal/verify. The exit status is 0 only if every
check passes.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			return runDemo(cmd.Context(), e, o)
		},
	}
	cmd.Flags().DurationVar(&o.timeout, "timeout", 50*time.Second, "give up (and fail) after this long")
	cmd.Flags().BoolVar(&o.keepData, "keep-data", false, "keep the demo's data directory (NATS store)")
	return cmd
}

// demoRun holds one demo's state; its methods are the demo's steps.
type demoRun struct {
	o     demoOptions
	w     io.Writer
	a     *app
	api   *merchantAPI
	start time.Time

	sellers []payment.Seller
	// checkouts in the order they were created; trail is the one whose
	// event trail step 4 prints.
	checkouts []*demoCheckout
	trail     *demoCheckout

	failures []string
}

func (d *demoRun) say(format string, args ...any) { fmt.Fprintf(d.w, format+"\n", args...) }

// check records a named check and prints its line: every claim the demo
// makes about the pipeline is one of these, and any failure fails the run.
func (d *demoRun) check(indent, line string, ok bool, why ...string) {
	if ok {
		d.say("%s%s: OK", indent, line)
		return
	}
	d.say("%s%s: FAILED (%s)", indent, line, strings.Join(why, "; "))
	d.failures = append(d.failures, line)
}

// demoConfig is the environment's configuration with the demo's
// overrides: its own broker and PSP, and ports nobody else uses.
func demoConfig(e *env) (config.Config, error) {
	cfg, err := config.FromEnv(func(k string) string {
		switch k {
		case config.EnvNATSURL, config.EnvPSPURL, config.EnvPSPAPIKey, config.EnvPSPSecrets:
			return ""
		case config.EnvPayoutSchedule, config.EnvReconAt:
			// The demo runs its payouts and its reconciliation itself; a
			// schedule catching up at start would only add work (and, on a
			// database with other data, results that are not the demo's).
			return "off"
		case config.EnvHTTPAddr, config.EnvPSPSimAddr:
			if v := e.getenv(k); strings.TrimSpace(v) != "" {
				return v
			}
			return "127.0.0.1:0" // never collide with a running serve
		}
		return e.getenv(k)
	})
	if err != nil {
		return config.Config{}, err
	}
	return cfg, cfg.RequireDatabase()
}

func runDemo(ctx context.Context, e *env, o demoOptions) (err error) {
	d := &demoRun{o: o, w: e.stdout, start: time.Now()}
	cfg, err := demoConfig(e)
	if err != nil {
		return err
	}
	level := slog.LevelWarn // keep the terminal for the narrative unless asked
	if cfg.LogLevelSet {
		level = cfg.LogLevel
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	cfg.DataDir = filepath.Join(cfg.DataDir, "demo-"+time.Now().UTC().Format("20060102T150405.000Z"))
	cfg.ReconReportDir = filepath.Join(cfg.DataDir, "recon")
	if !o.keepData {
		defer func() {
			if rerr := os.RemoveAll(cfg.DataDir); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove %s: %w", cfg.DataDir, rerr))
			}
		}()
	}
	d.a, err = newApp(appOptions{cfg: cfg, services: registry(), log: e.logger(level)})
	if err != nil {
		return err
	}
	d.say("paypipe demo: a pay-in and its pay-out, end to end, in one process")
	var ignored []string
	for _, k := range []string{config.EnvNATSURL, config.EnvPSPURL} {
		if e.getenv(k) != "" {
			ignored = append(ignored, k)
		}
	}
	if len(ignored) > 0 {
		d.say("   (%s ignored: the demo runs its own embedded broker and PSP simulator)", strings.Join(ignored, ", "))
	}
	if err := d.a.Start(ctx); err != nil {
		return d.gaveUp(ctx, err)
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer scancel()
		err = errors.Join(err, d.a.Stop(sctx))
	}()
	if err := d.run(ctx, cfg); err != nil {
		return d.gaveUp(ctx, err)
	}
	if len(d.failures) > 0 {
		return fmt.Errorf("demo: %d check(s) failed: %s", len(d.failures), strings.Join(d.failures, "; "))
	}
	d.say("\npaypipe demo: OK in %s", time.Since(d.start).Round(time.Millisecond))
	return nil
}

// gaveUp says so when err is the demo's deadline rather than a fault.
func (d *demoRun) gaveUp(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("demo: gave up after --timeout %s: %w", d.o.timeout, err)
	}
	return err
}

// run prints the set-up and runs the steps in order. A step returns an
// error only when the demo cannot go on; a broken claim is a failed check.
func (d *demoRun) run(ctx context.Context, cfg config.Config) error {
	a := d.a
	if a.sim == nil {
		return errors.New("demo: the embedded PSP simulator did not start")
	}
	keep := "removed at exit"
	if d.o.keepData {
		keep = "kept"
	}
	d.api = newMerchantAPI("http://" + a.http.Addr())
	d.say("   PostgreSQL  %s: durability settings on, migrations applied", redactURL(cfg.DatabaseURL))
	d.say("   NATS        embedded %s, JetStream store under %s (%s), fsync on every write", a.natsURL(), cfg.DataDir, keep)
	d.say("   PSP         embedded simulator %s (paypipe reaches it over HTTP only, as it would a real PSP)", a.sim.url)
	d.say("   paypipe     http://%s  API /v1/…, /metrics /healthz /readyz → %s", a.http.Addr(), d.api.readyz(ctx))
	d.say("   services    %s; relay mode %s", serviceNames(a.opts.services), cfg.RelayMode)

	steps := []func(context.Context) error{
		d.createMerchant,     // 1
		d.createCheckouts,    // 2
		d.awaitFinal,         // 3
		d.printTrail,         // 4
		d.printMoney,         // 5
		d.payOut,             // 6
		d.reconcile,          // 7
		d.runInvariantChecks, // 8
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// demoTable lines rows of cells up in columns. Every row has every cell
// (tabwriter ends a column at a row that lacks it), and trailing blanks of
// empty last cells are trimmed.
type demoTable struct {
	out    io.Writer
	indent string
	buf    bytes.Buffer
	tw     *tabwriter.Writer
}

func (d *demoRun) table(indent string, header ...string) *demoTable {
	t := &demoTable{out: d.w, indent: indent}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 4, 2, ' ', 0)
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *demoTable) row(cells ...string) {
	fmt.Fprintln(t.tw, t.indent+strings.Join(cells, "\t"))
}

func (t *demoTable) flush() error {
	if err := t.tw.Flush(); err != nil {
		return err
	}
	for line := range strings.Lines(t.buf.String()) {
		if _, err := io.WriteString(t.out, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	t.buf.Reset()
	return nil
}

// waitFor polls cond every 20ms until it holds, ctx ends or timeout passes.
// Polling a condition is the bounded wait here; nothing sleeps blindly.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var lastErr error
	for {
		ok, err := cond(ctx)
		if ok && err == nil {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// since renders to − from for the tables, "-" when to is unknown.
func since(from time.Time, to *time.Time) string {
	if to == nil || to.IsZero() {
		return "-"
	}
	return "+" + to.Sub(from).Round(100*time.Microsecond).String()
}
