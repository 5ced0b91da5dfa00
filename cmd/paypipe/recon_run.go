package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/services/reconciler"
)

func newReconRunCmd(e *env) *cobra.Command {
	var out reconOutput
	var date, file string
	var failOnMismatch, skipWallet bool
	cmd := &cobra.Command{
		Use:   "run --date D [--file F]",
		Short: "Reconcile one settlement date (download the PSP's file, or read --file)",
		Long: `run reconciles the settlement file of --date (UTC) with the ledger. Without --file
the file is downloaded from the PSP (PAYPIPE_PSP_URL). Running a date again with the
same file returns the stored result and posts nothing twice; a run that stopped
(crash, PSP down) resumes where it stopped. Mismatches are reported, not failures:
the exit code is 0 unless --fail-on-mismatch is given (then 3 when any was found).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			d, err := parseReconDate(date, time.Now())
			if err != nil {
				return err
			}
			s, err := e.openRecon(cmd.Context(), skipWallet)
			if err != nil {
				return err
			}
			defer s.Close()
			sum, err := s.r.Run(cmd.Context(), reconciler.RunRequest{Date: d, File: file})
			if err != nil {
				return reconError(err)
			}
			if out.format == "json" {
				err = writeJSON(e.stdout, sum)
			} else {
				err = printReconSummary(e.stdout, sum)
			}
			if err != nil {
				return err
			}
			if failOnMismatch && sum.MismatchTotal > 0 {
				return exitCodeError{code: exitMismatch, err: fmt.Errorf("%d mismatches on %s (--fail-on-mismatch)", sum.MismatchTotal, sum.SettlementDate)}
			}
			return nil
		},
	}
	out.register(cmd, "text", "json")
	f := cmd.Flags()
	f.StringVar(&date, "date", "", "settlement date, YYYY-MM-DD (UTC), today or yesterday")
	f.StringVar(&file, "file", "", "settlement file to read instead of downloading it")
	f.BoolVar(&failOnMismatch, "fail-on-mismatch", false, "exit 3 when the run found any mismatch")
	f.BoolVar(&skipWallet, "skip-wallet-check", false, "skip the wallet ↔ ledger check (it needs the wallet and ledger schemas here)")
	return cmd
}

// printReconSummary writes a run's summary for people.
func printReconSummary(w io.Writer, s reconciler.Summary) error {
	fmt.Fprintf(w, "settlement date  %s\nfile             %s\nrun              %s (completed %s)\n",
		s.SettlementDate, s.FileID, s.RunID, s.CompletedAt.Format(time.RFC3339))
	fmt.Fprintf(w, "lines            %d\nmatched          %d\nmismatches       %d\n", s.Lines, s.Matched, s.MismatchTotal)
	fmt.Fprintf(w, "batches settled  %d\ncarried over     %d (settles_later still open from earlier days)\nescalated        %d\n",
		s.Batches, s.CarriedOver, s.Escalated)
	if len(s.Mismatches) > 0 {
		classes := make([]string, 0, len(s.Mismatches))
		for c := range s.Mismatches {
			classes = append(classes, c)
		}
		sort.Strings(classes)
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CLASS\tQUEUE\tCOUNT")
		for _, c := range classes {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", c, queueOf(c), s.Mismatches[c])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(s.Totals) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "CURRENCY\tLINES\tMATCHED\tFILE NET\tMATCHED GROSS\tMISMATCHED |GROSS|\t")
		for _, t := range s.Totals {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", t.Currency, t.Lines, t.MatchedLines, t.FileNetMinor, t.MatchedGrossMinor, t.MismatchedAbsMinor)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if s.BalancesOK {
		fmt.Fprintln(w, "\nbalances         ok: closing − opening = Σ net of the lines, every currency")
	} else {
		fmt.Fprintln(w, "\nbalances         DIFFER:")
		for _, b := range s.Balances {
			if b.DifferenceMinor != 0 {
				fmt.Fprintf(w, "  %s opening %d closing %d lines net %d difference %d\n", b.Currency, b.OpeningMinor, b.ClosingMinor, b.LinesNetMinor, b.DifferenceMinor)
			}
		}
	}
	if s.MismatchTotal == 0 {
		fmt.Fprintln(w, "result           reconciled: no differences")
	} else {
		fmt.Fprintf(w, "result           %d mismatches: see `paypipe recon report --date %s` and `paypipe recon queue`\n", s.MismatchTotal, s.SettlementDate)
	}
	return nil
}
