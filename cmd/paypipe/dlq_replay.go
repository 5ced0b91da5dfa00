package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/paypipe/paypipe/outbox/dlq"
)

// defaultReplayRate keeps a large replay from swamping the consumers it
// feeds; operators raise it (or set 0) when they know the consumers cope.
const defaultReplayRate = "50/s"

func newDLQReplayCmd(e *env) *cobra.Command {
	var out outputFlag
	var sel dlqFilterFlags
	var actor actorFlag
	var all, dryRun, force bool
	var rateFlag string
	cmd := &cobra.Command{
		Use:   "replay [SEQ...] [filters] [--all] [--dry-run] [--force] [--rate N/s]",
		Short: "Republish dead messages to their original subjects, once each, audited",
		Long: `replay republishes each selected message to its original subject with its payload
and headers, under a new Nats-Msg-Id (the original one would be dropped as a
duplicate inside the stream's duplicate window) and with its ce-id unchanged:
consumers that already applied it skip it through their inbox, and the consumer
that gave up on it applies it, once. The original ce-id is also in the
paypipe-original-msg-id header.

Each replay is recorded in ops.dlq_audit (who, when, the new Nats-Msg-Id and
where it was stored) and marks the message: replaying it again needs --force.
With a filter, messages already replayed are skipped and reported, so the same
command can be run again after new failures. --dry-run shows what would be
replayed and changes nothing, not even the audit.

Select messages by DLQ sequence, by filters, or both (a sequence must then also
match the filters); every message needs --all. --rate bounds replays per second
(N/s or N/m; 0 for no limit). A progress bar is drawn when stdout is a terminal.
Exit status 1 if nothing was replayed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			perSec, err := parseRate(rateFlag)
			if err != nil {
				return err
			}
			f, err := sel.filter(args, time.Now())
			if err != nil {
				return err
			}
			if err := requireSelection("replay", f, all); err != nil {
				return err
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
			opts := dlq.ReplayOptions{Actor: who, DryRun: dryRun, Force: force, Rate: perSec}
			var bar *progressBar
			if !out.json() && !dryRun && isTerminal(e.stdout) {
				bar = &progressBar{w: e.stdout, width: 40}
				opts.Progress = bar.update
			}
			rep, rerr := s.admin.Replay(cmd.Context(), es, opts)
			if bar != nil {
				bar.clear()
			}
			if out.json() {
				if err := writeJSON(e.stdout, replayView(rep)); err != nil {
					return err
				}
			} else if err := printReplay(e.stdout, rep); err != nil {
				return err
			}
			if rerr != nil {
				return dlqError(rerr)
			}
			if rep.Replayed == 0 {
				return errors.New(nothingReplayed(rep))
			}
			return nil
		},
	}
	out.register(cmd)
	sel.register(cmd)
	actor.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&all, "all", false, "select every message in the DLQ (needed when no SEQ or filter is given)")
	fl.BoolVar(&dryRun, "dry-run", false, "show what would be replayed; publish and record nothing")
	fl.BoolVar(&force, "force", false, "also replay messages that were replayed before")
	fl.StringVar(&rateFlag, "rate", defaultReplayRate, "at most this many replays per second (N/s, N/m, or 0 for no limit)")
	return cmd
}

// parseRate reads --rate: "N/s", "N/m" or "N" (per second); 0 is no limit.
func parseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	num, unit, _ := strings.Cut(s, "/")
	per := 1.0
	switch unit {
	case "", "s":
	case "m":
		per = 60
	default:
		return 0, usagef("--rate %q: want N/s, N/m or 0 (no limit)", s)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || n > 1e6 {
		return 0, usagef("--rate %q: want N/s, N/m or 0 (no limit), N from 0 to 1000000", s)
	}
	return n / per, nil
}

// nothingReplayed explains why a replay did nothing.
func nothingReplayed(rep dlq.ReplayReport) string {
	var already, other int
	for _, r := range rep.Results {
		if errors.Is(r.Err, dlq.ErrAlreadyReplayed) {
			already++
		} else if r.Err != nil {
			other++
		}
	}
	verb := "replayed"
	if rep.DryRun {
		verb = "would be replayed"
	}
	switch {
	case already > 0 && other == 0:
		return fmt.Sprintf("nothing %s: the selected message(s) were replayed before (add --force to replay them again)", verb)
	case other > 0:
		return fmt.Sprintf("nothing %s: %d message(s) cannot be replayed, %d were replayed before (--force replays those)", verb, other, already)
	}
	return "nothing " + verb
}

type replayItem struct {
	Seq             uint64        `json:"dlq_seq"`
	Outcome         string        `json:"outcome"` // replayed, would_replay, skipped
	Reason          string        `json:"reason,omitempty"`
	Consumer        string        `json:"consumer"`
	OriginalSubject string        `json:"original_subject"`
	MsgID           string        `json:"msg_id"`
	NewNatsMsgID    string        `json:"new_nats_msg_id,omitempty"`
	Stream          string        `json:"stream,omitempty"`
	StreamSeq       uint64        `json:"stream_seq,omitempty"`
	Previously      *dlq.Replayed `json:"previously_replayed,omitempty"`
}

type replayJSON struct {
	DryRun   bool         `json:"dry_run"`
	Replayed int          `json:"replayed"`
	Skipped  int          `json:"skipped"`
	Results  []replayItem `json:"results"`
}

func replayView(rep dlq.ReplayReport) replayJSON {
	v := replayJSON{DryRun: rep.DryRun, Replayed: rep.Replayed, Skipped: rep.Skipped, Results: make([]replayItem, len(rep.Results))}
	for i, r := range rep.Results {
		it := replayItem{Seq: r.Seq, Consumer: r.Consumer, OriginalSubject: r.OriginalSubject, MsgID: r.MsgID,
			NewNatsMsgID: r.NewNatsMsgID, Stream: r.Stream, StreamSeq: r.StreamSeq, Previously: r.Previously}
		switch {
		case r.Err != nil:
			it.Outcome, it.Reason = "skipped", r.Err.Error()
		case rep.DryRun:
			it.Outcome = "would_replay"
		default:
			it.Outcome = "replayed"
		}
		v.Results[i] = it
	}
	return v
}

func printReplay(w io.Writer, rep dlq.ReplayReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rep.Results {
		switch {
		case r.Err != nil:
			fmt.Fprintf(tw, "skipped\t%d\t%s\t%s\t%s\n", r.Seq, r.Consumer, r.OriginalSubject, skipReason(r))
		case rep.DryRun:
			fmt.Fprintf(tw, "would replay\t%d\t%s\t%s\tce-id %s\n", r.Seq, r.Consumer, r.OriginalSubject, r.MsgID)
		default:
			fmt.Fprintf(tw, "replayed\t%d\t%s\t%s\tce-id %s → %s/%d, Nats-Msg-Id %s\n", r.Seq, r.Consumer, r.OriginalSubject,
				r.MsgID, r.Stream, r.StreamSeq, r.NewNatsMsgID)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.DryRun {
		_, err := fmt.Fprintf(w, "dry run: %d would be replayed, %d skipped; nothing was published or recorded\n", rep.Replayed, rep.Skipped)
		return err
	}
	_, err := fmt.Fprintf(w, "replayed %d, skipped %d\n", rep.Replayed, rep.Skipped)
	return err
}

func skipReason(r dlq.ReplayResult) string {
	switch {
	case errors.Is(r.Err, dlq.ErrAlreadyReplayed):
		return "already replayed (" + replayedText(r.Previously) + "); --force replays it again"
	case errors.Is(r.Err, dlq.ErrNoMessageID):
		return "no ce-id: under a new Nats-Msg-Id it would be a new message to every consumer; purge it or republish it by hand"
	}
	return r.Err.Error()
}

// isTerminal reports whether w is a terminal a person watches.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar redraws one line: [=====     ] 12/40.
type progressBar struct {
	w     io.Writer
	width int
}

func (p *progressBar) update(done, total int) {
	if total <= 0 {
		return
	}
	n := min(p.width*done/total, p.width)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("=", n), strings.Repeat(" ", p.width-n), done, total)
}

// clear erases the bar so the report starts on a clean line.
func (p *progressBar) clear() { fmt.Fprint(p.w, "\r\033[K") }
