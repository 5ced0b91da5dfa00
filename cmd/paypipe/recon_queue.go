package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/services/reconciler"
)

func newReconQueueCmd(e *env) *cobra.Command {
	var out reconOutput
	var queue, status, class, date string
	var limit int
	cmd := &cobra.Command{
		Use:   "queue [--queue Q] [--status open|resolved|all]",
		Short: "List the mismatch queues (auto, finance, investigation); resolve items",
		Long: `queue lists mismatches, oldest first: by default the open ones of every queue.
` + "`paypipe recon queue resolve ID --note N`" + ` closes one.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			f, err := queueFilter(queue, status, class, date, limit)
			if err != nil {
				return err
			}
			s, err := e.openRecon(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer s.Close()
			ms, err := s.r.Mismatches(cmd.Context(), f)
			if err != nil {
				return reconError(err)
			}
			if out.format == "json" {
				if ms == nil {
					ms = []reconciler.Mismatch{}
				}
				return writeJSON(e.stdout, ms)
			}
			if len(ms) == 0 {
				fmt.Fprintln(e.stdout, "no mismatches match")
				return nil
			}
			return printMismatches(e.stdout, ms)
		},
	}
	out.register(cmd, "text", "json")
	fl := cmd.Flags()
	fl.StringVar(&queue, "queue", "", "only this queue: auto, finance or investigation")
	fl.StringVar(&status, "status", "open", "open, resolved or all")
	fl.StringVar(&class, "class", "", "only this mismatch class (e.g. amount_mismatch)")
	fl.StringVar(&date, "date", "", "only mismatches of this settlement date (YYYY-MM-DD)")
	fl.IntVar(&limit, "limit", 100, fmt.Sprintf("at most this many (at most %d)", reconciler.MaxListLimit))
	cmd.AddCommand(newReconResolveCmd(e))
	return cmd
}

func queueFilter(queue, status, class, date string, limit int) (reconciler.Filter, error) {
	f := reconciler.Filter{Queue: queue, Class: class, Date: date, Limit: limit}
	switch queue {
	case "", contracts.QueueAuto, contracts.QueueFinance, contracts.QueueInvestigation:
	default:
		return f, usagef("--queue %q: want auto, finance or investigation", queue)
	}
	switch status {
	case "all":
	case reconciler.StatusOpen, reconciler.StatusResolved:
		f.Status = status
	default:
		return f, usagef("--status %q: want open, resolved or all", status)
	}
	if class != "" && contracts.MismatchQueue(class) == "" {
		return f, usagef("--class %q: not a mismatch class", class)
	}
	if limit < 1 || limit > reconciler.MaxListLimit {
		return f, usagef("--limit %d: want 1 to %d", limit, reconciler.MaxListLimit)
	}
	return f, nil
}

func newReconResolveCmd(e *env) *cobra.Command {
	var out reconOutput
	var note string
	var by actorFlag
	cmd := &cobra.Command{
		Use:   "resolve ID --note N [--by NAME]",
		Short: "Close an open mismatch, recording who and why (emits recon.mismatch.resolved)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("resolve takes one mismatch ID (the ID column of `paypipe recon queue`)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if strings.TrimSpace(note) == "" {
				return usagef("--note is required: say why the mismatch is resolved")
			}
			s, err := e.openRecon(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer s.Close()
			m, err := s.r.Resolve(cmd.Context(), args[0], by.resolve(e), strings.TrimSpace(note))
			if err != nil {
				return reconError(err)
			}
			if out.format == "json" {
				return writeJSON(e.stdout, m)
			}
			fmt.Fprintf(e.stdout, "resolved %s (%s, %s queue) by %s: %s\n", m.ID, m.Class, m.Queue, m.ResolvedBy, m.Note)
			return nil
		},
	}
	out.register(cmd, "text", "json")
	cmd.Flags().StringVar(&note, "note", "", "why the mismatch is resolved (required)")
	cmd.Flags().StringVar(&by.actor, "by", "", "who resolved it (default $USER@hostname)")
	return cmd
}

func printMismatches(w io.Writer, ms []reconciler.Mismatch) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDATE\tQUEUE\tCLASS\tSTATUS\tLINE\tREFERENCE\tCUR\tFILE\tLEDGER\tDETAIL")
	for _, m := range ms {
		line, ref := "-", m.PSPReference
		if m.LineNo != nil {
			line = strconv.FormatInt(*m.LineNo, 10)
		}
		if ref == "" {
			ref = m.SellerID
		}
		if ref == "" {
			ref = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", m.ID, m.SettlementDate, m.Queue, m.Class, m.Status,
			line, ref, m.Currency, m.FileAmountMinor, m.LedgerAmountMinor, oneLine(m.Detail, 90))
	}
	return tw.Flush()
}

func queueOf(class string) string { return contracts.MismatchQueue(class) }
