package shop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/services/payment"
)

// The demo merchant.
const (
	// MerchantName names the demo merchant; Setup finds it by this name.
	MerchantName = "paypipe demo shop"
	// FeeBps is the demo merchant's platform fee: 3.00%.
	FeeBps = 300
	// maxActiveKeys bounds the demo merchant's unrevoked API keys: each Setup
	// makes one (paypipe keeps only hashes, so an existing key cannot be
	// read back), and Setup revokes the oldest beyond this many.
	maxActiveKeys = 8
	setupTimeout  = 30 * time.Second
)

// Setup makes sure the demo merchant and its sellers exist and returns a
// fresh API key of the merchant and the sellers' ids in catalog order, for
// Config. It is idempotent: the merchant is found by MerchantName and the
// sellers by name under it, and only what is missing is created. Concurrent
// calls (replicas starting together) are serialised by an advisory lock.
// The payment schema must be migrated.
//
// Setup works on payment's tables directly, as `paypipe merchants create`
// does, because the API has no call to find a merchant or a seller by name.
func Setup(ctx context.Context, pool *pgxpool.Pool) (apiKey string, sellers []uuid.UUID, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	cat := demoCatalog()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('paypipe/internal/shop.Setup', 0))`); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		var merchantID uuid.UUID
		err := tx.QueryRow(ctx, `SELECT id FROM payment.merchants WHERE name = $1 ORDER BY created_at, id LIMIT 1`, MerchantName).Scan(&merchantID)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// CreateMerchant commits on its own connection; the lock, held by
			// this transaction until it ends, still covers it.
			m, key, err := payment.CreateMerchant(ctx, pool, MerchantName, FeeBps)
			if err != nil {
				return err
			}
			merchantID, apiKey = m.ID, key
		case err != nil:
			return fmt.Errorf("find merchant: %w", err)
		default:
			_, key, err := payment.CreateAPIKey(ctx, pool, merchantID)
			if err != nil {
				return err
			}
			apiKey = key
			if err := revokeSurplusKeys(ctx, pool, merchantID); err != nil {
				return err
			}
		}
		sellers, err = ensureSellers(ctx, tx, merchantID, cat.Sellers)
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("shop: setup: %w", err)
	}
	return apiKey, sellers, nil
}

// ensureSellers returns the merchant's sellers of these names, in order,
// creating those that do not exist.
func ensureSellers(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, names []string) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, len(names))
	for i, name := range names {
		err := tx.QueryRow(ctx, `SELECT id FROM payment.sellers WHERE merchant_id = $1 AND name = $2 ORDER BY created_at, id LIMIT 1`,
			merchantID, name).Scan(&ids[i])
		if err == nil {
			continue
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("find seller %q: %w", name, err)
		}
		// The same row POST /v1/sellers inserts; sellers carry no events.
		if ids[i], err = uuid.NewV7(); err != nil {
			return nil, fmt.Errorf("seller id: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO payment.sellers (id, merchant_id, name) VALUES ($1, $2, $3)`, ids[i], merchantID, name); err != nil {
			return nil, fmt.Errorf("create seller %q: %w", name, err)
		}
	}
	return ids, nil
}

// revokeSurplusKeys revokes the merchant's oldest unrevoked keys beyond
// maxActiveKeys, so that restarts do not pile keys up. A process still
// using a revoked key gets 401 from paypipe and must restart (run Setup).
func revokeSurplusKeys(ctx context.Context, pool *pgxpool.Pool, merchantID uuid.UUID) error {
	keys, err := payment.ListAPIKeys(ctx, pool, merchantID)
	if err != nil {
		return err
	}
	var active []payment.APIKey
	for _, k := range keys {
		if k.RevokedAt == nil {
			active = append(active, k)
		}
	}
	for i := 0; i < len(active)-maxActiveKeys; i++ { // oldest first
		if _, err := payment.RevokeAPIKey(ctx, pool, active[i].ID); err != nil {
			return err
		}
	}
	return nil
}
