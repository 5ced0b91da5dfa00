package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/internal/verify"
)

// errViolations makes verify exit non-zero after printing its report.
var errViolations = errors.New("invariants violated")

func newVerifyCmd(e *env) *cobra.Command {
	var out outputFlag
	var o verify.Options
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check paypipe's invariants on the live database; exit 1 on any violation",
		Long: `verify checks, on the database DATABASE_URL names:
  I2  every journal entry balances per currency; balances equal postings
  I3  every seller wallet equals its ledger seller_payable account
  I4  no checkout stays non-final past --horizon
  I5  every succeeded order has its ledger entry, wallet change and completion,
      and no outbox row stays unpublished, once older than --grace
  I6  no ledger entry for an order that did not succeed; amounts match
  I10 every recorded status transition moved forward
Quarantined PSP reports are listed as warnings (a person must review them).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			pool, err := openDB(cmd.Context(), cfg, "paypipe-verify")
			if err != nil {
				return err
			}
			defer pool.Close()
			// The checks read every service's schema: make sure they exist.
			if err := migrate.Up(cmd.Context(), pool, nil, schemasOf(registry())...); err != nil {
				return err
			}
			rep, err := verify.Run(cmd.Context(), pool, o)
			if err != nil {
				return err
			}
			if out.json() {
				if err := writeJSON(e.stdout, rep); err != nil {
					return err
				}
			} else {
				printVerify(e, rep)
			}
			if !rep.OK() {
				return fmt.Errorf("%w: %d", errViolations, len(rep.Violations))
			}
			return nil
		},
	}
	out.register(cmd)
	cmd.Flags().DurationVar(&o.Horizon, "horizon", 2*time.Hour, "a checkout not final after this long is stuck")
	cmd.Flags().DurationVar(&o.Grace, "grace", 5*time.Minute, "effects of an order are expected once it is this old")
	cmd.Flags().IntVar(&o.Limit, "limit", 100, "violations listed per check at most")
	return cmd
}

func printVerify(e *env, rep verify.Report) {
	failed := map[string]bool{}
	for _, v := range rep.Violations {
		failed[v.Check] = true
	}
	for _, c := range rep.Checks {
		mark := "ok"
		if failed[c] {
			mark = "FAIL"
		}
		fmt.Fprintf(e.stdout, "  %-4s %s\n", mark, c)
	}
	for _, v := range rep.Violations {
		fmt.Fprintf(e.stdout, "  FAIL %s: %s: %s\n", v.Invariant, v.Subject, v.Detail)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(e.stdout, "  WARN %s\n", w)
	}
	fmt.Fprintf(e.stdout, "checked %d checkouts, %d payment orders (%d completed), %d journal entries, %d wallet changes: ",
		rep.Counts["checkouts"], rep.Counts["orders"], rep.Counts["orders_complete"], rep.Counts["journal_entries"], rep.Counts["wallet_changes"])
	if rep.OK() {
		fmt.Fprintln(e.stdout, "all invariants hold")
	} else {
		fmt.Fprintf(e.stdout, "%d violations\n", len(rep.Violations))
	}
}
