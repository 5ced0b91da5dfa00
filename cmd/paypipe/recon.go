package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/reconciler"
)

// exitMismatch is `recon run --fail-on-mismatch`'s exit code when the run
// found mismatches (1 stays "the command failed", 2 "wrong invocation").
const exitMismatch = 3

// exitCodeError carries a specific exit code for run() to return.
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string { return e.err.Error() }
func (e exitCodeError) Unwrap() error { return e.err }

// ExitCode is the process exit code the error asks for.
func (e exitCodeError) ExitCode() int { return e.code }

func newReconCmd(e *env) *cobra.Command {
	c := groupCmd("recon", "Reconcile the PSP's settlement files with the ledger; list and resolve mismatches",
		newReconRunCmd(e), newReconReportCmd(e), newReconQueueCmd(e))
	c.Long = `The reconciler compares the PSP's settlement file of a day (docs/settlement-file.md),
line by line, with what the ledger expects, posts the settlement of matched lines
(recon.batch.settled) and classifies everything else into three queues:
  auto           paypipe fixes or rechecks it itself (missing_capture, settles_later)
  finance        money differs: a person decides (amount, fee, currency, missing_in_settlement,
                 wallet_ledger_drift)
  investigation  nobody knows the line (unknown_reference, duplicate_line, malformed_line)
It works on the database DATABASE_URL names (schema recon, created on first use);
events it writes are published by a running ` + "`paypipe serve`" + `. See docs/reconciliation.md.`
	return c
}

// reconSession is what a recon command works with.
type reconSession struct {
	pool *pgxpool.Pool
	r    *reconciler.Reconciler
}

func (s *reconSession) Close() { s.pool.Close() }

// openRecon connects to DATABASE_URL, migrates the recon schema and builds a
// reconciler with the deployment's settings (PAYPIPE_PSP_FEE_BPS,
// PAYPIPE_RECON_GRACE_DAYS, PAYPIPE_RECON_REPORT_DIR) and, when
// PAYPIPE_PSP_URL is set, its PSP.
func (e *env) openRecon(ctx context.Context, skipWallet bool) (*reconSession, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	pool, err := openDB(ctx, cfg, "paypipe-recon")
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := migrate.Up(mctx, pool, nil, reconciler.Schema()); err != nil {
		pool.Close()
		return nil, fmt.Errorf("recon schema: %w", err)
	}
	var client psp.Client
	var settlements psp.SettlementClient
	if cfg.PSPURL != "" {
		c, err := psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: cfg.PSPURL, APIKey: cfg.PSPAPIKey})
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("PSP client: %w", err)
		}
		client, settlements = c, c
	}
	r, err := reconciler.New(reconciler.Config{
		PSPFeeBPS:       int(cfg.PSPFeeBPS),
		GraceDays:       cfg.ReconGraceDays,
		ChunkLines:      int(cfg.ReconChunkLines),
		ReportDir:       cfg.ReconReportDir,
		SkipWalletCheck: skipWallet,
		RunAt:           "off",
	}, pool, client, settlements, e.logger(cfg.LogLevel))
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &reconSession{pool: pool, r: r}, nil
}

// parseReconDate reads --date: YYYY-MM-DD, "yesterday" or "today" (UTC).
func parseReconDate(s string, now time.Time) (time.Time, error) {
	now = now.UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch s {
	case "":
		return time.Time{}, usagef("--date is required (YYYY-MM-DD, or yesterday)")
	case "today":
		return today, nil
	case "yesterday":
		return today.AddDate(0, 0, -1), nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, usagef("--date %q: want YYYY-MM-DD (UTC), today or yesterday", s)
	}
	return d, nil
}

// reconError turns the reconciler's errors into operator messages.
func reconError(err error) error {
	switch {
	case errors.Is(err, reconciler.ErrInvalidRequest):
		return usageError{err}
	case errors.Is(err, reconciler.ErrRunInProgress):
		return fmt.Errorf("%w: wait for it to finish (a crashed run resumes when run again)", err)
	case errors.Is(err, reconciler.ErrNoPSP):
		return fmt.Errorf("%w: set PAYPIPE_PSP_URL and PAYPIPE_PSP_API_KEY, or give --file", err)
	case errors.Is(err, reconciler.ErrBadFile):
		return fmt.Errorf("%w (format: docs/settlement-file.md)", err)
	}
	return err
}

// reconOutput is -o for recon commands: text, json, and csv where allowed.
type reconOutput struct {
	format  string
	allowed []string
}

func (o *reconOutput) register(cmd *cobra.Command, allowed ...string) {
	o.allowed = allowed
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "output format: "+joinOr(allowed))
}

func (o *reconOutput) validate() error {
	for _, a := range o.allowed {
		if o.format == a {
			return nil
		}
	}
	return usagef("--output %q: want %s", o.format, joinOr(o.allowed))
}

func joinOr(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	out := s[0]
	for _, x := range s[1 : len(s)-1] {
		out += ", " + x
	}
	return out + " or " + s[len(s)-1]
}
