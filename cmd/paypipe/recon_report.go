package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/services/reconciler"
)

func newReconReportCmd(e *env) *cobra.Command {
	var out reconOutput
	var date string
	var limit int
	cmd := &cobra.Command{
		Use:   "report --date D",
		Short: "Show a reconciled date again: the summary and its mismatches (text, json or csv)",
		Long: `report prints the summary of the latest completed run of --date and the mismatches its
runs found. -o json prints {"summary": …, "mismatches": […]}; -o csv prints the
mismatch list only, in the CSV the run wrote to PAYPIPE_RECON_REPORT_DIR.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			d, err := parseReconDate(date, time.Now())
			if err != nil {
				return err
			}
			if limit < 1 || limit > reconciler.MaxListLimit {
				return usagef("--limit %d: want 1 to %d", limit, reconciler.MaxListLimit)
			}
			s, err := e.openRecon(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer s.Close()
			day := d.Format(time.DateOnly)
			sum, err := s.r.Report(cmd.Context(), day)
			if err != nil {
				return fmt.Errorf("%w (run `paypipe recon run --date %s` first)", reconError(err), day)
			}
			ms, err := s.r.Mismatches(cmd.Context(), reconciler.Filter{Date: day, Limit: limit})
			if err != nil {
				return reconError(err)
			}
			switch out.format {
			case "json":
				return writeJSON(e.stdout, map[string]any{"summary": sum, "mismatches": ms})
			case "csv":
				return reconciler.WriteMismatchCSV(e.stdout, ms)
			}
			if err := printReconSummary(e.stdout, sum); err != nil {
				return err
			}
			if len(ms) > 0 {
				fmt.Fprintln(e.stdout)
				return printMismatches(e.stdout, ms)
			}
			return nil
		},
	}
	out.register(cmd, "text", "json", "csv")
	cmd.Flags().StringVar(&date, "date", "", "settlement date, YYYY-MM-DD (UTC), today or yesterday")
	cmd.Flags().IntVar(&limit, "limit", 1000, fmt.Sprintf("at most this many mismatches (at most %d)", reconciler.MaxListLimit))
	return cmd
}
