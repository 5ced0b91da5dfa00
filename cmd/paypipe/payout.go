package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/services/payout"
)

func newPayoutCmd(e *env) *cobra.Command {
	return groupCmd("payout", "Run and list seller payouts; retry stuck ones", newPayoutRunCmd(e), newPayoutListCmd(e), newPayoutRetryCmd(e))
}

// payoutService opens the database, applies the payout schema's pending
// migrations (a no-op once `migrate up` or `serve` did) and returns a
// service that can run and list payouts. It has no PSP client: sending is
// `serve`'s job; a run only requests payouts, and the running service
// sends them.
func payoutService(ctx context.Context, e *env) (*payout.Service, *pgxpool.Pool, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, nil, err
	}
	pool, err := openDB(ctx, cfg, "paypipe-payout")
	if err != nil {
		return nil, nil, err
	}
	log := e.logger(cfg.LogLevel)
	if err := migrate.Up(ctx, pool, log, payout.Schema()); err != nil {
		pool.Close()
		return nil, nil, err
	}
	svc, err := payout.New(payout.Config{Schedule: "off"}, pool, nil, log)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return svc, pool, nil
}

func newPayoutRunCmd(e *env) *cobra.Command {
	var out outputFlag
	var req payout.RunRequest
	cmd := &cobra.Command{
		Use:   "run [--period YYYY-MM-DD] [--seller S] [--currency C]",
		Short: "Request a payout for every seller and currency with money available",
		Long: `run requests one payout per seller and currency whose available balance is
positive, for a period (default: today, UTC). It is idempotent per seller,
currency and period: running it again requests nothing new and says so. The
wallet decides each amount (everything available when it reserves it); a
running "paypipe serve" sends the payouts to the PSP.

--period is a day (2025-03-14) or a UTC RFC 3339 time (2025-03-14T15:00:00Z).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if req.Period == "" {
				req.Period = payout.DayPeriod(time.Now())
			}
			if req.Currency != "" {
				if _, err := money.ParseCurrency(req.Currency); err != nil {
					return usagef("--currency: %v", err)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			svc, pool, err := payoutService(ctx, e)
			if err != nil {
				return err
			}
			defer pool.Close()
			res, err := svc.RunPayouts(ctx, req)
			if errors.Is(err, payout.ErrInvalidRun) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(e.stdout, res)
			}
			switch {
			case res.Candidates == 0:
				fmt.Fprintf(e.stdout, "period %s: no seller has money available; nothing requested\n", res.Period)
			case res.Requested == 0:
				fmt.Fprintf(e.stdout, "period %s: nothing new: all %d payouts were already requested\n", res.Period, res.AlreadyRequested)
			default:
				fmt.Fprintf(e.stdout, "period %s: requested %d payouts (%d already requested)\n", res.Period, res.Requested, res.AlreadyRequested)
			}
			return nil
		},
	}
	out.register(cmd)
	cmd.Flags().StringVar(&req.Period, "period", "", "period: YYYY-MM-DD or a UTC RFC 3339 time (default today, UTC)")
	cmd.Flags().StringVar(&req.SellerID, "seller", "", "only this seller")
	cmd.Flags().StringVar(&req.Currency, "currency", "", "only this currency (ISO 4217)")
	return cmd
}

func newPayoutListCmd(e *env) *cobra.Command {
	var out outputFlag
	var f payout.ListFilter
	cmd := &cobra.Command{
		Use:   "list [--status S] [--seller S] [--period P] [--limit N]",
		Short: "List payouts, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			switch f.Status {
			case "", contracts.PayoutStatusRequested, contracts.PayoutStatusCreated, contracts.PayoutStatusSent,
				contracts.PayoutStatusPaid, contracts.PayoutStatusFailed, contracts.PayoutStatusCanceled:
			default:
				return usagef("--status %q: want requested, created, sent, paid, failed or canceled", f.Status)
			}
			if f.Limit < 1 || f.Limit > 1000 {
				return usagef("--limit %d: want 1 to 1000", f.Limit)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			svc, pool, err := payoutService(ctx, e)
			if err != nil {
				return err
			}
			defer pool.Close()
			ps, err := svc.List(ctx, f)
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(e.stdout, ps)
			}
			if len(ps) == 0 {
				fmt.Fprintln(e.stdout, "no payouts")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSELLER\tPERIOD\tSTATUS\tAMOUNT\tPSP PAYOUT\tNOTE")
			for _, p := range ps {
				amount := fmt.Sprintf("%d %s", p.AmountMinor, p.Currency)
				if c, err := money.ParseCurrency(p.Currency); err == nil {
					amount = money.Format(p.AmountMinor, c)
				}
				note := p.FailureCode
				if note == "" {
					note = p.Reason
				}
				if p.Stuck {
					note = "STUCK: " + p.LastError
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.SellerID, p.Period, p.Status, amount, p.PSPPayoutID, note)
			}
			return tw.Flush()
		},
	}
	out.register(cmd)
	cmd.Flags().StringVar(&f.Status, "status", "", "only payouts in this status")
	cmd.Flags().StringVar(&f.SellerID, "seller", "", "only this seller")
	cmd.Flags().StringVar(&f.Period, "period", "", "only this period")
	cmd.Flags().IntVar(&f.Limit, "limit", 100, "at most this many (1 to 1000)")
	return cmd
}

func newPayoutRetryCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "retry PAYOUT_ID",
		Short: "Put a stuck payout back in the sender's queue (after checking it at the PSP)",
		Long: `A payout is stuck when the PSP's answer stayed unknown for the give-up window
(a day): it may or may not have been paid, so paypipe never marks it failed.
Check it at the PSP (its merchant reference is the payout id), then retry: the
running service sends it again with the same idempotency key after looking it
up, so a payout the PSP made is found, not repeated. Exit 1 if it is not stuck.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one payout id (see paypipe payout list --status created)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			svc, pool, err := payoutService(ctx, e)
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := svc.RetryStuck(ctx, args[0]); err != nil {
				if errors.Is(err, payout.ErrInvalidRun) {
					return usageError{err}
				}
				return err
			}
			fmt.Fprintf(e.stdout, "payout %s is back in the sender's queue\n", args[0])
			return nil
		},
	}
}
