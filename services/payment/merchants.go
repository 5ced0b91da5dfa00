package payment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Merchant is a platform using paypipe: it owns sellers, checkouts and API
// keys, and takes FeeBps basis points of every payment order as its fee.
type Merchant struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	FeeBps    int       `json:"fee_bps"`
	CreatedAt time.Time `json:"created_at"`
}

// APIKey describes a stored key. The secret itself is returned once, at
// creation, and never stored: only its SHA-256 and Prefix are.
type APIKey struct {
	ID         uuid.UUID  `json:"id"`
	MerchantID uuid.UUID  `json:"merchant_id"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// Merchant limits (the table checks them too).
const (
	maxMerchantNameLen = 200
	MaxFeeBps          = 10_000
	// maxKeysListed bounds ListAPIKeys.
	maxKeysListed = 1000
)

// ErrInvalidMerchant is wrapped by CreateMerchant's validation errors.
var ErrInvalidMerchant = errors.New("payment: invalid merchant")

// ErrNotFound is returned for a merchant or key that does not exist.
var ErrNotFound = errors.New("payment: not found")

// CreateMerchant creates a merchant and its first API key in one
// transaction and returns the key's secret: the only time it is visible.
func CreateMerchant(ctx context.Context, pool *pgxpool.Pool, name string, feeBps int) (Merchant, string, error) {
	if why := validText(name, maxMerchantNameLen); why != "" {
		return Merchant{}, "", fmt.Errorf("%w: name %s", ErrInvalidMerchant, why)
	}
	if feeBps < 0 || feeBps > MaxFeeBps {
		return Merchant{}, "", fmt.Errorf("%w: fee %d bps: want 0 to %d", ErrInvalidMerchant, feeBps, MaxFeeBps)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Merchant{}, "", fmt.Errorf("payment: merchant id: %w", err)
	}
	m := Merchant{ID: id, Name: name, FeeBps: feeBps}
	var secret string
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO payment.merchants (id, name, fee_bps) VALUES ($1, $2, $3) RETURNING created_at`,
			m.ID, m.Name, m.FeeBps).Scan(&m.CreatedAt); err != nil {
			return fmt.Errorf("insert merchant: %w", err)
		}
		_, secret, err = createAPIKeyTx(ctx, tx, m.ID)
		return err
	})
	if err != nil {
		return Merchant{}, "", fmt.Errorf("payment: create merchant: %w", err)
	}
	m.CreatedAt = m.CreatedAt.UTC()
	return m, secret, nil
}

// CreateAPIKey adds an API key to a merchant (for rotation: create the new
// key, deploy it, revoke the old one) and returns its secret, once.
func CreateAPIKey(ctx context.Context, pool *pgxpool.Pool, merchantID uuid.UUID) (APIKey, string, error) {
	var k APIKey
	var secret string
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payment.merchants WHERE id = $1)`, merchantID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("merchant %s: %w", merchantID, ErrNotFound)
		}
		var err error
		k, secret, err = createAPIKeyTx(ctx, tx, merchantID)
		return err
	})
	if err != nil {
		return APIKey{}, "", fmt.Errorf("payment: create api key: %w", err)
	}
	return k, secret, nil
}

func createAPIKeyTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID) (APIKey, string, error) {
	secret, err := newAPIKey()
	if err != nil {
		return APIKey{}, "", err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return APIKey{}, "", fmt.Errorf("api key id: %w", err)
	}
	k := APIKey{ID: id, MerchantID: merchantID, Prefix: KeyDisplayPrefix(secret)}
	if err := tx.QueryRow(ctx, `INSERT INTO payment.api_keys (id, merchant_id, key_hash, prefix) VALUES ($1, $2, $3, $4) RETURNING created_at`,
		k.ID, k.MerchantID, hashKey(secret), k.Prefix).Scan(&k.CreatedAt); err != nil {
		return APIKey{}, "", fmt.Errorf("insert api key: %w", err)
	}
	k.CreatedAt = k.CreatedAt.UTC()
	return k, secret, nil
}

// RevokeAPIKey revokes a key; requests with it get 401 from the next one on.
// Revoking a revoked key is a no-op that returns the key as it is.
func RevokeAPIKey(ctx context.Context, pool *pgxpool.Pool, keyID uuid.UUID) (APIKey, error) {
	var k APIKey
	err := pool.QueryRow(ctx, `UPDATE payment.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
RETURNING id, merchant_id, prefix, created_at, revoked_at`, keyID).Scan(&k.ID, &k.MerchantID, &k.Prefix, &k.CreatedAt, &k.RevokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, fmt.Errorf("payment: revoke api key %s: %w", keyID, ErrNotFound)
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("payment: revoke api key: %w", err)
	}
	k.CreatedAt = k.CreatedAt.UTC()
	if k.RevokedAt != nil {
		t := k.RevokedAt.UTC()
		k.RevokedAt = &t
	}
	return k, nil
}

// ListAPIKeys lists a merchant's keys (never their secrets), oldest first,
// at most maxKeysListed.
func ListAPIKeys(ctx context.Context, pool *pgxpool.Pool, merchantID uuid.UUID) ([]APIKey, error) {
	rows, err := pool.Query(ctx, `SELECT id, merchant_id, prefix, created_at, revoked_at FROM payment.api_keys
WHERE merchant_id = $1 ORDER BY created_at, id LIMIT $2`, merchantID, maxKeysListed)
	if err != nil {
		return nil, fmt.Errorf("payment: list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) {
		var k APIKey
		err := row.Scan(&k.ID, &k.MerchantID, &k.Prefix, &k.CreatedAt, &k.RevokedAt)
		k.CreatedAt = k.CreatedAt.UTC()
		if k.RevokedAt != nil {
			t := k.RevokedAt.UTC()
			k.RevokedAt = &t
		}
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("payment: list api keys: %w", err)
	}
	return keys, nil
}
