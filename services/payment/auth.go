package payment

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// API keys are "pp_test_" followed by the base62 encoding of 32 random bytes,
// left-padded to 43 characters (62^43 > 2^256). Only the SHA-256 of the whole
// key is stored: with 256 bits of entropy there is nothing to brute-force,
// so a fast hash is enough and the lookup is one index probe. The first
// keyDisplayLen characters are kept in clear to tell keys apart in listings.
const (
	APIKeyPrefix  = "pp_test_"
	keySecretLen  = 43
	keyDisplayLen = len(APIKeyPrefix) + 4
	// base62 is big.Int's digit order for bases above 36.
	base62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

// newAPIKey returns a fresh secret key.
func newAPIKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("payment: api key: %w", err)
	}
	n := new(big.Int).SetBytes(b[:])
	s := n.Text(62)
	return APIKeyPrefix + strings.Repeat("0", keySecretLen-len(s)) + s, nil
}

// wellFormedKey checks a presented key's shape before any database work.
func wellFormedKey(k string) bool {
	if len(k) != len(APIKeyPrefix)+keySecretLen || !strings.HasPrefix(k, APIKeyPrefix) {
		return false
	}
	for i := len(APIKeyPrefix); i < len(k); i++ {
		if strings.IndexByte(base62, k[i]) < 0 {
			return false
		}
	}
	return true
}

func hashKey(k string) []byte {
	h := sha256.Sum256([]byte(k))
	return h[:]
}

// KeyDisplayPrefix is the part of a key that paypipe stores in clear and
// shows in listings.
func KeyDisplayPrefix(k string) string {
	if len(k) < keyDisplayLen {
		return k
	}
	return k[:keyDisplayLen]
}

// merchantCtx is the authenticated caller of a request.
type merchantCtx struct {
	ID     uuid.UUID
	FeeBps int
	KeyID  uuid.UUID
}

type ctxKey int

const ctxMerchant ctxKey = iota

func merchantFrom(ctx context.Context) merchantCtx {
	m, _ := ctx.Value(ctxMerchant).(merchantCtx)
	return m
}

var errUnauthorized = &apiError{code: CodeUnauthorized}

// bearerKey extracts the key of "Authorization: Bearer <key>".
func bearerKey(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, key, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return key, true
}

// authenticate resolves the request's API key to its merchant. Missing,
// malformed, unknown and revoked keys all get the same 401 with no detail:
// the answer must not help anyone probing for keys. Revocation takes effect
// on the next request (nothing is cached).
func (s *Service) authenticate(ctx context.Context, r *http.Request) (merchantCtx, error) {
	key, ok := bearerKey(r)
	if !ok || !wellFormedKey(key) {
		return merchantCtx{}, errUnauthorized
	}
	var m merchantCtx
	var revokedAt *time.Time
	err := s.pool.QueryRow(ctx, `SELECT k.id, k.merchant_id, m.fee_bps, k.revoked_at
FROM payment.api_keys k JOIN payment.merchants m ON m.id = k.merchant_id
WHERE k.key_hash = $1`, hashKey(key)).Scan(&m.KeyID, &m.ID, &m.FeeBps, &revokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return merchantCtx{}, errUnauthorized
	}
	if err != nil {
		return merchantCtx{}, dbError(fmt.Errorf("authenticate: %w", err))
	}
	if revokedAt != nil {
		return merchantCtx{}, errUnauthorized
	}
	return m, nil
}

// authed wraps h with authentication.
func (s *Service) authed(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		m, err := s.authenticate(r.Context(), r)
		if err != nil {
			return err
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), ctxMerchant, m)))
	}
}
