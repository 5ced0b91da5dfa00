package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/outbox/dlq"
)

func newDLQShowCmd(e *env) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "show SEQ",
		Short: "One dead message: why it died, its headers and its payload (pretty-printed)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("show takes one DLQ sequence (the SEQ column of `paypipe dlq list`), got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || seq == 0 {
				return usagef("%q is not a DLQ sequence: want a positive number from the SEQ column of `paypipe dlq list`", args[0])
			}
			s, err := e.openDLQ(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			entry, err := s.admin.Get(cmd.Context(), seq)
			if err != nil {
				return dlqError(err)
			}
			if out.json() {
				return writeJSON(e.stdout, showJSON(entry))
			}
			return printDLQEntry(e.stdout, entry, time.Now())
		},
	}
	out.register(cmd)
	return cmd
}

// dlqShowView is `dlq show -o json`: the entry, with a JSON payload inline
// (readable, and queryable with jq) and any other payload in base64.
type dlqShowView struct {
	dlq.Entry
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 string          `json:"payload_base64,omitempty"`
}

func showJSON(e dlq.Entry) dlqShowView {
	v := dlqShowView{Entry: e}
	if json.Valid(e.Payload) {
		v.Payload = json.RawMessage(e.Payload)
	} else if len(e.Payload) > 0 {
		v.PayloadBase64 = base64.StdEncoding.EncodeToString(e.Payload)
	}
	return v
}

func printDLQEntry(w io.Writer, e dlq.Entry, now time.Time) error {
	var b strings.Builder
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	orig := e.OriginalSubject
	if e.OriginalStream != "" {
		orig += fmt.Sprintf(" (stream %s, sequence %d)", e.OriginalStream, e.OriginalSeq)
	}
	fmt.Fprintf(&b, "DLQ message %d  %s\n", e.Seq, e.Subject)
	for _, kv := range [][2]string{
		{"dead-lettered", fmt.Sprintf("%s (%s ago)", ts(e.StoredAt), ago(now.Sub(e.StoredAt)))},
		{"consumer", e.Consumer},
		{"original", orig},
		{"ce-id", e.MsgID},
		{"attempts", fmt.Sprintf("%d (first failure %s, last %s)", e.Attempts, ts(e.FirstFailure), ts(e.LastFailure))},
		{"reason", e.Reason},
		{"error", e.Error},
		{"replayed", replayedText(e.Replayed)},
	} {
		v := kv[1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(&b, "  %-14s %s\n", kv[0]+":", v)
	}
	b.WriteString("\nHeaders:\n")
	keys := make([]string, 0, len(e.Headers))
	for k := range e.Headers {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int { return strings.Compare(strings.ToLower(x), strings.ToLower(y)) })
	for _, k := range keys {
		for _, v := range e.Headers[k] {
			fmt.Fprintf(&b, "  %s: %s\n", k, v)
		}
	}
	fmt.Fprintf(&b, "\nPayload (%d bytes):\n", len(e.Payload))
	b.WriteString(prettyPayload(e.Payload))
	_, err := io.WriteString(w, b.String())
	return err
}

// prettyPayload indents JSON, shows other text as it is, and binary as
// base64, so a payload can never garble the terminal.
func prettyPayload(p []byte) string {
	if len(p) == 0 {
		return "  (empty)\n"
	}
	var buf bytes.Buffer
	if json.Indent(&buf, p, "  ", "  ") == nil {
		return "  " + buf.String() + "\n"
	}
	if utf8.Valid(p) && !bytes.ContainsFunc(p, func(r rune) bool { return r < ' ' && r != '\n' && r != '\t' }) {
		return "  " + strings.ReplaceAll(strings.TrimRight(string(p), "\n"), "\n", "\n  ") + "\n"
	}
	return "  (not text; base64) " + base64.StdEncoding.EncodeToString(p) + "\n"
}
