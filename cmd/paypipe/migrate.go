package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/internal/migrate"
)

func newMigrateCmd(e *env) *cobra.Command {
	return groupCmd("migrate", "Apply or inspect database migrations (one goose version table per service schema)",
		newMigrateUpCmd(e), newMigrateStatusCmd(e))
}

func newMigrateUpCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "up [service...]",
		Short: "Apply every pending migration of the services (all by default)",
		Long: `up applies pending migrations, schema by schema. Concurrent runs (replicas starting
together) serialise on a per-schema advisory lock; the later ones find nothing to do.
serve runs the same migrations at start-up.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			svcs, err := selectServices(args)
			if err != nil {
				return err
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			pool, err := openDB(cmd.Context(), cfg, "paypipe-migrate")
			if err != nil {
				return err
			}
			defer pool.Close()
			schemas := schemasOf(svcs)
			if err := migrate.Up(cmd.Context(), pool, e.logger(cfg.LogLevel), schemas...); err != nil {
				return err
			}
			st, err := migrate.StatusOf(cmd.Context(), pool, schemas...)
			if err != nil {
				return err
			}
			for _, s := range schemas {
				var v int64
				for _, m := range st {
					if m.Schema == s.Name() && m.Applied {
						v = max(v, m.Version)
					}
				}
				fmt.Fprintf(e.stdout, "%s: at version %d\n", s.Name(), v)
			}
			return nil
		},
	}
}

func newMigrateStatusCmd(e *env) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "status [service...]",
		Short: "List every migration and whether it is applied",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			svcs, err := selectServices(args)
			if err != nil {
				return err
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			pool, err := openDB(cmd.Context(), cfg, "paypipe-migrate")
			if err != nil {
				return err
			}
			defer pool.Close()
			st, err := migrate.StatusOf(cmd.Context(), pool, schemasOf(svcs)...)
			if err != nil {
				return err
			}
			if out.json() {
				if st == nil {
					st = []migrate.Status{}
				}
				return writeJSON(e.stdout, st)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SCHEMA\tVERSION\tSTATE\tAPPLIED AT\tSOURCE")
			for _, m := range st {
				state, at := "pending", "-"
				if m.Applied {
					state, at = "applied", m.At
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", m.Schema, m.Version, state, at, m.Source)
			}
			return tw.Flush()
		},
	}
	out.register(cmd)
	return cmd
}
