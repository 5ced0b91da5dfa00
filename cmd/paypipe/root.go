package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/internal/config"
	"github.com/paypipe/paypipe/internal/pg"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// env is what a command may touch of the outside world.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

// run executes one paypipe invocation and returns its exit code. Errors are
// printed once, on stderr, as "paypipe: <message>".
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	e := &env{getenv: getenv, stdout: stdout, stderr: stderr}
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "paypipe: %v\n", err)
		var ec exitCodeError
		if errors.As(err, &ec) {
			return ec.code
		}
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

// usageError marks a wrong invocation (exit 2) as opposed to a failure.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "paypipe",
		Short: "A payment pipeline on an outbox → NATS JetStream → inbox backbone",
		Long: `paypipe runs payment services that talk only through events: each state change
and its events commit in one PostgreSQL transaction (outbox), relays publish them
to NATS JetStream, and consumers apply each event at most once (inbox).

Configuration comes from environment variables (DATABASE_URL, NATS_URL,
PAYPIPE_*); see internal/config. Start with:

  export DATABASE_URL=$(bash scripts/pg.sh up)
  paypipe demo`,
		SilenceUsage:  true, // errors are not usage problems; usage errors say so themselves
		SilenceErrors: true, // run prints the error once
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("a command is required (see paypipe --help)")
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCmd(e), newMigrateCmd(e), newOutboxCmd(e), newDLQCmd(e), newDemoCmd(e), newMerchantsCmd(e), newPSPSimCmd(e), newVerifyCmd(e), newPayoutCmd(e), newReconCmd(e))
	return root
}

// noArgs is cobra.NoArgs reporting a usage error, and pointing at help for
// a mistyped command.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
	}
	return nil
}

// groupCmd is a command that only holds subcommands.
func groupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("%s needs a subcommand (see %s --help)", cmd.CommandPath(), cmd.CommandPath())
		},
	}
	c.AddCommand(subs...)
	return c
}

func (e *env) config() (config.Config, error) {
	return config.FromEnv(e.getenv)
}

// logger writes JSON lines to stderr, keeping stdout for command output.
func (e *env) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// openDB opens a pool and waits (bounded) for the server to answer, so a
// wrong DATABASE_URL fails here with one clear message.
func openDB(ctx context.Context, cfg config.Config, appName string) (*pgxpool.Pool, error) {
	if err := cfg.RequireDatabase(); err != nil {
		return nil, err
	}
	pool, err := pg.Open(ctx, cfg.DatabaseURL, pg.Options{AppName: appName})
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL at %s does not answer: %w", redactURL(cfg.DatabaseURL), err)
	}
	return pool, nil
}

// redactURL keeps a database URL printable: no password.
func redactURL(u string) string {
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return "(unparseable DATABASE_URL)"
	}
	c := cfg.ConnConfig
	return fmt.Sprintf("postgres://%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// outputFlag is -o/--output: text for people, json for scripts.
type outputFlag struct{ format string }

func (o *outputFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "output format: text or json")
}

func (o *outputFlag) validate() error {
	if o.format != "text" && o.format != "json" {
		return usagef("--output %q: want text or json", o.format)
	}
	return nil
}

func (o *outputFlag) json() bool { return o.format == "json" }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
