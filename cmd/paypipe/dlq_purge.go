package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/outbox/dlq"
)

func newDLQPurgeCmd(e *env) *cobra.Command {
	var out outputFlag
	var sel dlqFilterFlags
	var actor actorFlag
	var all, yes bool
	cmd := &cobra.Command{
		Use:   "purge [SEQ...] [filters] [--all] --yes",
		Short: "Delete dead messages from the DLQ for good, audited",
		Long: `purge deletes the selected messages from the DLQ stream and records each deletion
(who, when, which message) in ops.dlq_audit. A purged message cannot be replayed:
use it for messages that must not be applied (a bad event, a test message), after
checking them with ` + "`paypipe dlq show`" + `. Select by DLQ sequence, by filters,
or both; every message needs --all. --yes is required.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			f, err := sel.filter(args, time.Now())
			if err != nil {
				return err
			}
			if err := requireSelection("purge", f, all); err != nil {
				return err
			}
			if !yes {
				return usagef("purge deletes dead messages for good: add --yes (check what matches first with `paypipe dlq list` and the same selection)")
			}
			who := actor.resolve(e)
			s, err := e.openDLQ(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			es, err := selectDLQ(cmd.Context(), s.admin, f, sel.limit)
			if err != nil {
				return err
			}
			rep, perr := s.admin.Purge(cmd.Context(), es, who)
			if out.json() {
				if err := writeJSON(e.stdout, purgeView(rep)); err != nil {
					return err
				}
			} else if err := printPurge(e.stdout, rep); err != nil {
				return err
			}
			if perr != nil {
				return dlqError(perr)
			}
			if rep.Purged == 0 {
				return errors.New("nothing purged: the selected messages were already gone")
			}
			return nil
		},
	}
	out.register(cmd)
	sel.register(cmd)
	actor.register(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "select every message in the DLQ (needed when no SEQ or filter is given)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion (required)")
	return cmd
}

type purgeItem struct {
	Seq             uint64 `json:"dlq_seq"`
	Outcome         string `json:"outcome"` // purged, gone
	Consumer        string `json:"consumer"`
	OriginalSubject string `json:"original_subject"`
	MsgID           string `json:"msg_id"`
}

type purgeJSON struct {
	Purged  int         `json:"purged"`
	Missing int         `json:"missing"`
	Results []purgeItem `json:"results"`
}

func purgeView(rep dlq.PurgeReport) purgeJSON {
	v := purgeJSON{Purged: rep.Purged, Missing: rep.Missing, Results: make([]purgeItem, len(rep.Results))}
	for i, r := range rep.Results {
		outcome := "purged"
		if r.Err != nil {
			outcome = "gone"
		}
		v.Results[i] = purgeItem{Seq: r.Seq, Outcome: outcome, Consumer: r.Consumer, OriginalSubject: r.OriginalSubject, MsgID: r.MsgID}
	}
	return v
}

func printPurge(w io.Writer, rep dlq.PurgeReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rep.Results {
		what := "purged"
		if r.Err != nil {
			what = "already gone"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\tce-id %s\n", what, r.Seq, r.Consumer, r.OriginalSubject, r.MsgID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "purged %d, already gone %d\n", rep.Purged, rep.Missing)
	return err
}
