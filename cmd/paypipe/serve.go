package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newServeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "serve [service...]",
		Short: "Run services (all by default): relays, consumers, sweeper, /metrics /healthz /readyz",
		Long: `serve runs the named services (all when none is named) until SIGINT or SIGTERM.

It refuses to start on a PostgreSQL server that may lose committed data (fsync,
full_page_writes or synchronous_commit off), applies pending migrations, starts
an embedded nats-server when NATS_URL is empty (JetStream store under
PAYPIPE_DATA_DIR/nats-embedded, fsync on every write), declares the streams and
consumers, and then runs for each service an outbox relay, its consumers and a
sweeper of old outbox and inbox rows. Any number of serve processes may run
against one database and one (external) broker.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			svcs, err := selectServices(args)
			if err != nil {
				return err
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			if err := cfg.RequireDatabase(); err != nil {
				return err
			}
			a, err := newApp(appOptions{cfg: cfg, services: svcs, log: e.logger(cfg.LogLevel)})
			if err != nil {
				return err
			}
			return a.Run(cmd.Context(), func(a *app) {
				nats := a.natsURL()
				if a.ns != nil {
					nats = "embedded " + nats
				}
				fmt.Fprintf(e.stdout, "paypipe: serving %s (nats: %s, relay: %s); http://%s/metrics /healthz /readyz\n",
					serviceNames(svcs), nats, cfg.RelayMode, a.http.Addr())
			})
		},
	}
}
