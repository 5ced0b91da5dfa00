package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/internal/config"
	"github.com/paypipe/paypipe/outbox"
)

func newOutboxCmd(e *env) *cobra.Command {
	return groupCmd("outbox", "Inspect and re-drive the services' outboxes",
		newOutboxStatusCmd(e), newOutboxRedriveCmd(e))
}

func newOutboxStatusCmd(e *env) *cobra.Command {
	var out outputFlag
	var schema string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Backlog, oldest pending age, published in the last minute and retrying rows, per schema",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			stores, err := storeFor(schema)
			if err != nil {
				return err
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			pool, err := openDB(cmd.Context(), cfg, "paypipe-outbox")
			if err != nil {
				return err
			}
			defer pool.Close()
			sts, err := outboxStatuses(cmd.Context(), pool, stores)
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(e.stdout, sts)
			}
			return printOutboxStatus(e.stdout, sts, "")
		},
	}
	out.register(cmd)
	cmd.Flags().StringVar(&schema, "schema", "", "only this service schema (default: all)")
	return cmd
}

func outboxStatuses(ctx context.Context, pool *pgxpool.Pool, stores []outbox.Store) ([]outbox.Status, error) {
	out := make([]outbox.Status, 0, len(stores))
	for _, s := range stores {
		st, err := s.Status(ctx, pool)
		if err != nil {
			return nil, notMigrated(err)
		}
		out = append(out, st)
	}
	return out, nil
}

// notMigrated adds the fix to the most likely error on a fresh database.
func notMigrated(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w (run `paypipe migrate up` first)", err)
	}
	return err
}

func printOutboxStatus(w io.Writer, sts []outbox.Status, indent string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, indent+"SCHEMA\tBACKLOG\tOLDEST PENDING\tPUBLISHED (LAST MIN)\tRETRYING\tRETAINED PUBLISHED\tOLDEST PENDING ERROR")
	for _, st := range sts {
		age := "-"
		if st.Backlog > 0 {
			age = st.OldestPendingAge.Round(time.Millisecond).String()
		}
		lastErr := st.OldestPendingError
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s%s\t%d\t%s\t%d\t%d\t%d\t%s\n", indent, st.Schema, st.Backlog, age,
			st.PublishedLastMin, st.RetryingRows, st.RetainedPublished, lastErr)
	}
	return tw.Flush()
}

func newOutboxRedriveCmd(e *env) *cobra.Command {
	var since, schema string
	cmd := &cobra.Command{
		Use:   "redrive --since <RFC 3339 time | duration ago> [--schema name]",
		Short: "Mark published rows created since a time as pending again, so relays re-send them",
		Long: `redrive re-queues every published outbox row created at or after --since, so the
relays send it again with its original Nats-Msg-Id. Use it after an incident that
may have lost acknowledged messages (a broker that lost unsynced writes, a stream
purged by mistake). JetStream drops copies it still remembers (duplicate window);
consumers' inboxes drop the rest, so nothing is applied twice.

--since takes an RFC 3339 time (2026-11-26T09:00:00Z) or a duration meaning "that
long ago" (90m, 2h, 1d). Rows older than PAYPIPE_OUTBOX_RETENTION are already
swept and cannot be re-driven.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			t, err := parseSince(since, now)
			if err != nil {
				return err
			}
			stores, err := storeFor(schema)
			if err != nil {
				return err
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			pool, err := openDB(cmd.Context(), cfg, "paypipe-outbox")
			if err != nil {
				return err
			}
			defer pool.Close()
			if now.Sub(t) > cfg.OutboxRetention {
				fmt.Fprintf(e.stdout, "note: --since is %s ago, beyond the outbox retention (%s): older rows are already swept\n",
					now.Sub(t).Round(time.Second), config.FormatDuration(cfg.OutboxRetention))
			}
			var total int64
			for _, s := range stores {
				n, err := s.Redrive(cmd.Context(), pool, t)
				if err != nil {
					return notMigrated(err)
				}
				total += n
				fmt.Fprintf(e.stdout, "%s: re-queued %d rows created since %s\n", s.Schema(), n, t.UTC().Format(time.RFC3339))
			}
			fmt.Fprintf(e.stdout, "re-queued %d rows in total; running relays re-send them with their original Nats-Msg-Id\n", total)
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "re-drive rows created at or after this RFC 3339 time, or this long ago (e.g. 2h) (required)")
	cmd.Flags().StringVar(&schema, "schema", "", "only this service schema (default: all)")
	return cmd
}

// parseSince reads --since: an RFC 3339 time, or a duration back from now.
// A time in the future is refused: nothing created after now has been
// published, and accepting it would silently re-drive nothing.
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, usagef("--since is required")
	}
	t, terr := time.Parse(time.RFC3339Nano, s)
	if terr != nil {
		if strings.HasPrefix(s, "-") {
			return time.Time{}, usagef("--since %q: a duration counts back from now; %q would be in the future", s, s)
		}
		d, derr := config.ParseDuration(s)
		if derr != nil {
			return time.Time{}, usagef("--since %q: want an RFC 3339 time (2026-11-26T09:00:00Z) or a duration ago (2h, 1d)", s)
		}
		t = now.Add(-d)
	}
	if t.After(now) {
		return time.Time{}, usagef("--since %s is in the future (now is %s): only rows already published can be re-driven",
			t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return t, nil
}
