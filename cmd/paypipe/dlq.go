package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/config"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox/dlq"
)

func newDLQCmd(e *env) *cobra.Command {
	c := groupCmd("dlq", "List, inspect, replay and purge dead-lettered messages",
		newDLQListCmd(e), newDLQShowCmd(e), newDLQReplayCmd(e), newDLQPurgeCmd(e))
	c.Long = `A consumer that gives up on a message (a permanent error, or its attempts used up)
publishes it to the DLQ stream, subject dlq.<consumer>.<original subject>, with every
original header and Paypipe-Dlq-* headers saying why. These commands work on that
stream, on the broker NATS_URL names, and record replays and purges in PostgreSQL
(DATABASE_URL, schema ops, created on first use).

Each message is named by its DLQ sequence (the SEQ column of list). Filters:
--consumer, --subject (the original subject; * and > wildcards), --since and
--until (when it was dead-lettered: an RFC 3339 time or a duration ago, e.g. 2h, 1d),
--error-contains (the last error, ignoring case).`
	return c
}

// dlqFilterFlags are the selection flags list, replay and purge share.
type dlqFilterFlags struct {
	consumer, subject, since, until, errorContains string
	limit                                          int
}

func (f *dlqFilterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.consumer, "consumer", "", "only messages this durable consumer gave up on")
	fl.StringVar(&f.subject, "subject", "", "only this original subject (wildcards * and > allowed)")
	fl.StringVar(&f.since, "since", "", "only messages dead-lettered at or after this RFC 3339 time, or this long ago (2h, 1d)")
	fl.StringVar(&f.until, "until", "", "only messages dead-lettered at or before this RFC 3339 time, or this long ago")
	fl.StringVar(&f.errorContains, "error-contains", "", "only messages whose last error contains this text (any case)")
	fl.IntVar(&f.limit, "limit", dlq.DefaultLimit, fmt.Sprintf("at most this many messages (at most %d)", dlq.MaxLimit))
}

// filter builds the selection from the flags and SEQ arguments. Every
// mistake is a usage error, found before anything is contacted.
func (f *dlqFilterFlags) filter(args []string, now time.Time) (dlq.Filter, error) {
	flt := dlq.Filter{Consumer: f.consumer, Subject: f.subject, ErrorContains: f.errorContains}
	var err error
	if flt.Since, err = parseDLQTime("--since", f.since, now); err != nil {
		return dlq.Filter{}, err
	}
	if flt.Until, err = parseDLQTime("--until", f.until, now); err != nil {
		return dlq.Filter{}, err
	}
	for _, a := range args {
		seq, err := strconv.ParseUint(a, 10, 64)
		if err != nil || seq == 0 {
			return dlq.Filter{}, usagef("%q is not a DLQ sequence: want a positive number from the SEQ column of `paypipe dlq list`", a)
		}
		flt.Seqs = append(flt.Seqs, seq)
	}
	if f.limit < 1 || f.limit > dlq.MaxLimit {
		return dlq.Filter{}, usagef("--limit %d: want 1 to %d", f.limit, dlq.MaxLimit)
	}
	if err := flt.Validate(); err != nil {
		return dlq.Filter{}, usageError{err}
	}
	return flt, nil
}

// parseDLQTime reads --since/--until: an RFC 3339 time or a duration ago.
func parseDLQTime(name, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return time.Time{}, usagef("%s %q: want an RFC 3339 time (2026-11-26T09:00:00Z) or a duration ago (90m, 2h, 1d)", name, s)
	}
	return now.Add(-d), nil
}

// describeFilter says in words what a filter selects, for "matches nothing".
func describeFilter(f dlq.Filter) string {
	var parts []string
	if len(f.Seqs) > 0 {
		s := make([]string, len(f.Seqs))
		for i, q := range f.Seqs {
			s[i] = strconv.FormatUint(q, 10)
		}
		parts = append(parts, "sequence "+strings.Join(s, ", "))
	}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, fmt.Sprintf("%s %q", k, v))
		}
	}
	add("consumer", f.Consumer)
	add("subject", f.Subject)
	if !f.Since.IsZero() {
		add("since", f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		add("until", f.Until.UTC().Format(time.RFC3339))
	}
	add("error containing", f.ErrorContains)
	return strings.Join(parts, ", ")
}

// requireSelection refuses an empty selection for commands that change
// things: acting on the whole DLQ must be asked for by name.
func requireSelection(verb string, f dlq.Filter, all bool) error {
	if f.IsZero() && !all {
		return usagef("%s what? Give DLQ sequences or at least one filter (--consumer, --subject, --since, --until, --error-contains), or --all for every message", verb)
	}
	return nil
}

// dlqSession is what a dlq command talks to: the deployment's broker and the
// audit database.
type dlqSession struct {
	nc    *nats.Conn
	pool  *pgxpool.Pool
	admin *dlq.Admin
}

func (s *dlqSession) Close() {
	s.nc.Close()
	s.pool.Close()
}

// openDLQ connects to NATS_URL and DATABASE_URL and makes sure the audit
// table exists (migrating the ops schema is idempotent and serialised by
// an advisory lock, like every migration).
func (e *env) openDLQ(ctx context.Context) (*dlqSession, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	if cfg.NATSURL == "" {
		return nil, errors.New("NATS_URL is not set: dlq commands work on the dead-letter stream of a running deployment, " +
			"so they need its broker's URL (e.g. NATS_URL=nats://127.0.0.1:4222); a `paypipe serve` that runs its own " +
			`embedded broker logs that URL at start ("nats" in the "paypipe started" line)`)
	}
	pool, err := openDB(ctx, cfg, "paypipe-dlq")
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := migrate.Up(mctx, pool, nil, dlq.Schema()); err != nil {
		pool.Close()
		return nil, fmt.Errorf("audit table: %w", err)
	}
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("paypipe-dlq"), nats.Timeout(5*time.Second))
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to NATS at %s (NATS_URL): %w", cfg.NATSURL, err)
	}
	s := &dlqSession{nc: nc, pool: pool}
	js, err := jetstream.New(nc)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.Stream(sctx, contracts.StreamDLQ); err != nil {
		s.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("NATS at %s has no %s stream: is NATS_URL the deployment's broker? (`paypipe serve` declares the streams at start)",
				nc.ConnectedUrlRedacted(), contracts.StreamDLQ)
		}
		return nil, fmt.Errorf("NATS at %s: stream %s: %w", nc.ConnectedUrlRedacted(), contracts.StreamDLQ, err)
	}
	s.admin = dlq.NewAdmin(js, pool)
	return s, nil
}

// selectDLQ lists what a filter selects, at most limit; more than limit is
// an error for commands that act on the whole selection.
func selectDLQ(ctx context.Context, admin *dlq.Admin, f dlq.Filter, limit int) ([]dlq.Entry, error) {
	es, err := admin.List(ctx, f, min(limit+1, dlq.MaxLimit))
	if err != nil {
		return nil, dlqError(err)
	}
	if len(es) == 0 {
		return nil, noMatch(f)
	}
	if mayHaveMore(len(es), limit) {
		return nil, fmt.Errorf("more than %d DLQ messages match %s: narrow the filters, or raise --limit (at most %d)",
			limit, describeFilter(f), dlq.MaxLimit)
	}
	return es, nil
}

// mayHaveMore reports whether a listing asked for limit+1 entries (capped
// at dlq.MaxLimit) and got n may have left some out.
func mayHaveMore(n, limit int) bool {
	return n > limit || (limit == dlq.MaxLimit && n == limit)
}

func noMatch(f dlq.Filter) error {
	return fmt.Errorf("no DLQ message matches %s (see `paypipe dlq list`)", describeFilter(f))
}

// dlqError turns the library's errors into operator messages.
func dlqError(err error) error {
	switch {
	case errors.Is(err, dlq.ErrInvalidFilter):
		return usageError{err}
	case errors.Is(err, dlq.ErrNotFound):
		return fmt.Errorf("%w (see `paypipe dlq list`; purged and expired messages are gone)", err)
	case errors.Is(err, dlq.ErrBusy):
		return fmt.Errorf("%w: wait for it to finish and try again", err)
	}
	return err
}

// actorFlag is --actor: who the audit says did it, by default $USER@host.
type actorFlag struct{ actor string }

func (a *actorFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.actor, "actor", "", "who to record in the audit (default $USER@hostname)")
}

func (a *actorFlag) resolve(e *env) string {
	if s := strings.TrimSpace(a.actor); s != "" {
		return s
	}
	user := e.getenv("USER")
	if user == "" {
		user = e.getenv("LOGNAME")
	}
	if user == "" {
		user = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return user + "@" + host
}

// oneLine makes an error text fit a table cell.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

// ago formats a duration coarsely: 45s, 12m, 3h20m, 4d2h.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func replayedText(r *dlq.Replayed) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%dx, last %s by %s", r.Count, r.LastAt.UTC().Format(time.RFC3339), r.LastActor)
}
