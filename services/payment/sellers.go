package payment

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// maxSellerNameLen matches the table's CHECK.
const maxSellerNameLen = 200

// Seller is the API's seller object.
type Seller struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Balances are the seller's wallet balances per currency as last
	// reported by wallet (a projection, so possibly a moment behind).
	Balances []Balance `json:"balances"`
}

// Balance is one currency's balance of a seller.
type Balance struct {
	Currency       string `json:"currency"`
	PendingMinor   int64  `json:"pending_minor"`
	AvailableMinor int64  `json:"available_minor"`
	PaidOutMinor   int64  `json:"paid_out_minor"`
}

type createSellerRequest struct {
	Name string `json:"name"`
}

func (s *Service) createSeller(ctx context.Context, tx pgx.Tx, m merchantCtx, body []byte) (int, any, error) {
	var req createSellerRequest
	if err := decodeStrict(body, &req); err != nil {
		return 0, nil, err
	}
	if req.Name == "" {
		return 0, nil, fieldErrors(FieldError{Field: "name", Code: FieldRequired, Detail: "name is required"})
	}
	if why := validText(req.Name, maxSellerNameLen); why != "" {
		return 0, nil, fieldErrors(FieldError{Field: "name", Code: FieldInvalidString, Detail: "name " + why})
	}
	id, err := uuid.NewV7()
	if err != nil {
		return 0, nil, internal(err)
	}
	out := Seller{ID: id, Name: req.Name, Balances: []Balance{}}
	if err := tx.QueryRow(ctx, `INSERT INTO payment.sellers (id, merchant_id, name) VALUES ($1, $2, $3) RETURNING created_at`,
		id, m.ID, req.Name).Scan(&out.CreatedAt); err != nil {
		return 0, nil, dbError(fmt.Errorf("insert seller: %w", err))
	}
	out.CreatedAt = out.CreatedAt.UTC()
	return http.StatusCreated, out, nil
}

func (s *Service) getSeller(w http.ResponseWriter, r *http.Request) error {
	if _, err := strictQuery(r); err != nil {
		return err
	}
	id, ok := parseUUID(r.PathValue("id"))
	if !ok {
		return notFound()
	}
	ctx, m := r.Context(), merchantFrom(r.Context())
	out := Seller{ID: id, Balances: []Balance{}}
	err := s.pool.QueryRow(ctx, `SELECT name, created_at FROM payment.sellers WHERE id = $1 AND merchant_id = $2`,
		id, m.ID).Scan(&out.Name, &out.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound()
	}
	if err != nil {
		return dbError(fmt.Errorf("read seller: %w", err))
	}
	out.CreatedAt = out.CreatedAt.UTC()
	rows, err := s.pool.Query(ctx, `SELECT currency, pending_minor, available_minor, paid_out_minor
FROM payment.seller_balances WHERE seller_id = $1 AND merchant_id = $2 ORDER BY currency`, id, m.ID)
	if err != nil {
		return dbError(fmt.Errorf("read balances: %w", err))
	}
	bals, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Balance, error) {
		var b Balance
		err := row.Scan(&b.Currency, &b.PendingMinor, &b.AvailableMinor, &b.PaidOutMinor)
		return b, err
	})
	if err != nil {
		return dbError(fmt.Errorf("read balances: %w", err))
	}
	if len(bals) > 0 {
		out.Balances = bals
	}
	return writeJSON(w, http.StatusOK, out)
}

// notFound is the one answer for an object that does not exist or belongs
// to another merchant: the body must not tell the two apart.
func notFound() *apiError { return &apiError{code: CodeNotFound} }
