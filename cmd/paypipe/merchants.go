package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/services/payment"
)

func newMerchantsCmd(e *env) *cobra.Command {
	return groupCmd("merchants", "Create merchants and manage their API keys",
		newMerchantsCreateCmd(e), groupCmd("keys", "Create, list and revoke a merchant's API keys",
			newMerchantKeysCreateCmd(e), newMerchantKeysListCmd(e), newMerchantKeysRevokeCmd(e)))
}

// paymentDB opens the database and applies the payment schema's pending
// migrations (a no-op when `migrate up` or `serve` already did), so that
// creating the first merchant is the first thing an operator can do.
func paymentDB(ctx context.Context, e *env) (*pgxpool.Pool, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	pool, err := openDB(ctx, cfg, "paypipe-merchants")
	if err != nil {
		return nil, err
	}
	if err := migrate.Up(ctx, pool, e.logger(cfg.LogLevel), payment.Schema()); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// createdMerchant is merchants create's JSON output.
type createdMerchant struct {
	Merchant payment.Merchant `json:"merchant"`
	APIKey   string           `json:"api_key"`
	Prefix   string           `json:"api_key_prefix"`
}

func newMerchantsCreateCmd(e *env) *cobra.Command {
	var out outputFlag
	var name string
	var feeBps int
	cmd := &cobra.Command{
		Use:   "create --name <name> [--fee-bps 300]",
		Short: "Create a merchant and its first API key (the key is printed once)",
		Long: `create adds a merchant and an API key in one transaction and prints the merchant's
id and the key. The key is shown this once: paypipe stores only its SHA-256 and
its first characters. Applies the payment schema's migrations first if needed.

--fee-bps is the platform's fee on every payment order, in basis points
(300 = 3.00%), rounded half up to the minor unit.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if name == "" {
				return usagef("--name is required")
			}
			if feeBps < 0 || feeBps > payment.MaxFeeBps {
				return usagef("--fee-bps %d: want 0 to %d", feeBps, payment.MaxFeeBps)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			pool, err := paymentDB(ctx, e)
			if err != nil {
				return err
			}
			defer pool.Close()
			m, key, err := payment.CreateMerchant(ctx, pool, name, feeBps)
			if errors.Is(err, payment.ErrInvalidMerchant) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(e.stdout, createdMerchant{Merchant: m, APIKey: key, Prefix: payment.KeyDisplayPrefix(key)})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "merchant\t%s\n", m.ID)
			fmt.Fprintf(tw, "name\t%s\n", m.Name)
			fmt.Fprintf(tw, "fee\t%d bps\n", m.FeeBps)
			fmt.Fprintf(tw, "api key\t%s\n", key)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "\nStore the API key now: it is not shown again (paypipe keeps only its hash).")
			return nil
		},
	}
	out.register(cmd)
	cmd.Flags().StringVar(&name, "name", "", "merchant name (1 to 200 characters)")
	cmd.Flags().IntVar(&feeBps, "fee-bps", 300, "platform fee in basis points (0 to 10000)")
	return cmd
}

// createdKey is keys create's JSON output.
type createdKey struct {
	Key    payment.APIKey `json:"key"`
	APIKey string         `json:"api_key"`
}

func newMerchantKeysCreateCmd(e *env) *cobra.Command {
	var out outputFlag
	var merchant string
	cmd := &cobra.Command{
		Use:   "create --merchant <id>",
		Short: "Add an API key to a merchant, for rotation (the key is printed once)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			id, err := uuidFlag("--merchant", merchant)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			pool, err := paymentDB(ctx, e)
			if err != nil {
				return err
			}
			defer pool.Close()
			k, key, err := payment.CreateAPIKey(ctx, pool, id)
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(e.stdout, createdKey{Key: k, APIKey: key})
			}
			fmt.Fprintf(e.stdout, "key id   %s\napi key  %s\n\nStore the API key now: it is not shown again.\n", k.ID, key)
			return nil
		},
	}
	out.register(cmd)
	cmd.Flags().StringVar(&merchant, "merchant", "", "merchant id")
	return cmd
}

func newMerchantKeysListCmd(e *env) *cobra.Command {
	var out outputFlag
	var merchant string
	cmd := &cobra.Command{
		Use:   "list --merchant <id>",
		Short: "List a merchant's API keys (ids and prefixes, never the keys)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			id, err := uuidFlag("--merchant", merchant)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			pool, err := paymentDB(ctx, e)
			if err != nil {
				return err
			}
			defer pool.Close()
			keys, err := payment.ListAPIKeys(ctx, pool, id)
			if err != nil {
				return err
			}
			if out.json() {
				if keys == nil {
					keys = []payment.APIKey{}
				}
				return writeJSON(e.stdout, keys)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY ID\tPREFIX\tCREATED\tREVOKED")
			for _, k := range keys {
				revoked := "-"
				if k.RevokedAt != nil {
					revoked = k.RevokedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\n", k.ID, k.Prefix, k.CreatedAt.Format(time.RFC3339), revoked)
			}
			return tw.Flush()
		},
	}
	out.register(cmd)
	cmd.Flags().StringVar(&merchant, "merchant", "", "merchant id")
	return cmd
}

func newMerchantKeysRevokeCmd(e *env) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "revoke <key id>",
		Short: "Revoke an API key: requests with it get 401 from the next one on",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("revoke takes one key id (see `paypipe merchants keys list`)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			id, err := uuidFlag("key id", args[0])
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			pool, err := paymentDB(ctx, e)
			if err != nil {
				return err
			}
			defer pool.Close()
			k, err := payment.RevokeAPIKey(ctx, pool, id)
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(e.stdout, k)
			}
			fmt.Fprintf(e.stdout, "revoked %s (%s…) at %s\n", k.ID, k.Prefix, k.RevokedAt.Format(time.RFC3339))
			return nil
		},
	}
	out.register(cmd)
	return cmd
}

func uuidFlag(name, v string) (uuid.UUID, error) {
	if v == "" {
		return uuid.Nil, usagef("%s is required", name)
	}
	id, err := uuid.Parse(v)
	if err != nil {
		return uuid.Nil, usagef("%s %q: not a UUID", name, v)
	}
	return id, nil
}
