package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/outbox/dlq"
)

func newDLQListCmd(e *env) *cobra.Command {
	var out outputFlag
	var sel dlqFilterFlags
	cmd := &cobra.Command{
		Use:   "list [filters]",
		Short: "Table of dead messages: DLQ sequence, consumer, original subject, attempts, age, error",
		Long: `list shows dead messages, oldest first, at most --limit of them. A filter that
matches nothing is an error (exit 1); an empty DLQ is not.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			now := time.Now()
			f, err := sel.filter(nil, now)
			if err != nil {
				return err
			}
			s, err := e.openDLQ(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			es, err := s.admin.List(cmd.Context(), f, min(sel.limit+1, dlq.MaxLimit))
			if err != nil {
				return dlqError(err)
			}
			more := mayHaveMore(len(es), sel.limit)
			if len(es) > sel.limit {
				es = es[:sel.limit]
			}
			if out.json() {
				if err := writeJSON(e.stdout, listItems(es, now)); err != nil {
					return err
				}
			} else if len(es) > 0 {
				if err := printDLQList(e.stdout, es, now); err != nil {
					return err
				}
			}
			if more {
				fmt.Fprintf(e.stderr, "paypipe: showing the first %d; more may match (narrow the filters or raise --limit)\n", sel.limit)
			}
			if len(es) == 0 {
				if !f.IsZero() {
					return noMatch(f)
				}
				if !out.json() {
					fmt.Fprintln(e.stdout, "the DLQ is empty: no consumer has given up on a message")
				}
			}
			return nil
		},
	}
	out.register(cmd)
	sel.register(cmd)
	return cmd
}

// dlqListItem is one row of `dlq list -o json`: the entry without its
// headers and payload (`dlq show` has those).
type dlqListItem struct {
	Seq             uint64        `json:"dlq_seq"`
	Consumer        string        `json:"consumer"`
	OriginalSubject string        `json:"original_subject"`
	OriginalStream  string        `json:"original_stream"`
	OriginalSeq     uint64        `json:"original_seq"`
	MsgID           string        `json:"msg_id"`
	Attempts        int           `json:"attempts"`
	Reason          string        `json:"reason"`
	Error           string        `json:"error"`
	StoredAt        time.Time     `json:"stored_at"`
	AgeSeconds      int64         `json:"age_seconds"`
	Replayed        *dlq.Replayed `json:"replayed,omitempty"`
}

func listItems(es []dlq.Entry, now time.Time) []dlqListItem {
	out := make([]dlqListItem, len(es))
	for i, e := range es {
		out[i] = dlqListItem{
			Seq: e.Seq, Consumer: e.Consumer, OriginalSubject: e.OriginalSubject, OriginalStream: e.OriginalStream,
			OriginalSeq: e.OriginalSeq, MsgID: e.MsgID, Attempts: e.Attempts, Reason: e.Reason, Error: e.Error,
			StoredAt: e.StoredAt, AgeSeconds: int64(now.Sub(e.StoredAt).Seconds()), Replayed: e.Replayed,
		}
	}
	return out
}

func printDLQList(w io.Writer, es []dlq.Entry, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tCONSUMER\tSUBJECT\tATTEMPTS\tAGE\tREPLAYED\tERROR")
	for _, e := range es {
		replayed := "-"
		if e.Replayed != nil {
			replayed = fmt.Sprintf("%dx", e.Replayed.Count)
		}
		errText := oneLine(e.Error, 80)
		if errText == "" {
			errText = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Seq, e.Consumer, e.OriginalSubject, e.Attempts,
			ago(now.Sub(e.StoredAt)), replayed, errText)
	}
	return tw.Flush()
}
