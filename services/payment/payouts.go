package payment

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/outbox"
)

// Payout is the API's payout object: a projection of the payout service's
// payouts.payout.* events, possibly a moment behind it.
type Payout struct {
	ID          uuid.UUID `json:"id"`
	Object      string    `json:"object"`
	SellerID    uuid.UUID `json:"seller_id"`
	Currency    string    `json:"currency"`
	AmountMinor int64     `json:"amount_minor"`
	Status      string    `json:"status"`
	Period      string    `json:"period"`
	PSPPayoutID *string   `json:"psp_payout_id"`
	FailureCode *string   `json:"failure_code"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// PayoutList is a page of payouts, newest first.
type PayoutList struct {
	Object  string   `json:"object"`
	Data    []Payout `json:"data"`
	HasMore bool     `json:"has_more"`
}

// payoutStatuses are the statuses a projected payout can have (requested
// is never projected: the payout exists for the merchant once created).
var payoutStatuses = []string{contracts.PayoutStatusCreated, contracts.PayoutStatusSent, contracts.PayoutStatusPaid,
	contracts.PayoutStatusFailed, contracts.PayoutStatusCanceled}

// handlePayoutChanged upserts the payouts projection, keeping the highest
// version: events of one payout may arrive in any order and any number of
// times, and only a newer version replaces the row.
func (e *eventSide) handlePayoutChanged(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if d.Type != contracts.TypeOf(d.Subject) {
		return fmt.Errorf("%w: %s has type %q, this consumer reads %q", ErrInvalidEvent, d.Subject, d.Type, contracts.TypeOf(d.Subject))
	}
	var ev contracts.PayoutChanged
	if err := decode(d, &ev); err != nil {
		return err
	}
	id, err := parseID(d, "payout_id", ev.PayoutID)
	if err != nil {
		return err
	}
	merchantID, err := parseID(d, "merchant_id", ev.MerchantID)
	if err != nil {
		return err
	}
	sellerID, err := parseID(d, "seller_id", ev.SellerID)
	if err != nil {
		return err
	}
	if _, err := money.ParseCurrency(ev.Currency); err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrInvalidEvent, d.Subject, d.MsgID, err)
	}
	if ev.Version < 1 || !containsString(payoutStatuses, ev.Status) || ev.AmountMinor < 0 {
		return fmt.Errorf("%w: %s %s: version %d, status %q, amount %d", ErrInvalidEvent, d.Subject, d.MsgID,
			ev.Version, ev.Status, ev.AmountMinor)
	}
	changed := ev.ChangedAt
	if changed.IsZero() {
		changed = e.now()
	}
	if _, err := tx.Exec(ctx, `INSERT INTO payment.payouts
  (id, merchant_id, seller_id, currency, amount_minor, status, period, psp_payout_id, failure_code, version, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, ''), nullif($9, ''), $10, $11, $12)
ON CONFLICT (id) DO UPDATE SET amount_minor = EXCLUDED.amount_minor, status = EXCLUDED.status,
  psp_payout_id = coalesce(EXCLUDED.psp_payout_id, payment.payouts.psp_payout_id),
  failure_code = EXCLUDED.failure_code, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
WHERE payment.payouts.version < EXCLUDED.version`,
		id, merchantID, sellerID, ev.Currency, ev.AmountMinor, ev.Status, ev.Period, ev.PSPPayoutID, ev.FailureCode,
		ev.Version, ev.CreatedAt, changed); err != nil {
		return fmt.Errorf("payment: payout projection: %w", err)
	}
	return nil
}

const payoutSelect = `SELECT id, seller_id, currency, amount_minor, status, period, psp_payout_id, failure_code, created_at, updated_at
FROM payment.payouts`

func scanPayout(row pgx.CollectableRow) (Payout, error) {
	p := Payout{Object: "payout"}
	err := row.Scan(&p.ID, &p.SellerID, &p.Currency, &p.AmountMinor, &p.Status, &p.Period, &p.PSPPayoutID, &p.FailureCode,
		&p.CreatedAt, &p.UpdatedAt)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

func (s *Service) getPayout(w http.ResponseWriter, r *http.Request) error {
	return getOwned(s, w, r, "payout", payoutSelect, scanPayout)
}

// getOwned answers GET /v1/<objects>/{id}: the authenticated merchant's
// object with that id; any other id, another merchant's included, is the
// same 404. query selects the object's columns; scan reads one row.
func getOwned[T any](s *Service, w http.ResponseWriter, r *http.Request, what, query string, scan pgx.RowToFunc[T]) error {
	if _, err := strictQuery(r); err != nil {
		return err
	}
	id, ok := parseUUID(r.PathValue("id"))
	if !ok {
		return notFound()
	}
	ctx := r.Context()
	rows, err := s.pool.Query(ctx, query+` WHERE id = $1 AND merchant_id = $2`, id, merchantFrom(ctx).ID)
	if err != nil {
		return dbError(fmt.Errorf("read %s: %w", what, err))
	}
	v, err := pgx.CollectExactlyOneRow(rows, scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound()
	}
	if err != nil {
		return dbError(fmt.Errorf("read %s: %w", what, err))
	}
	return writeJSON(w, http.StatusOK, v)
}

// listPayouts is GET /v1/payouts: the merchant's payouts, newest first,
// optionally of one seller, in one status, or created after a time.
func (s *Service) listPayouts(w http.ResponseWriter, r *http.Request) error {
	q, qerr := strictQuery(r, "limit", "starting_after", "seller_id", "status", "created_after")
	if qerr != nil {
		return qerr
	}
	limit, lerr := parseLimit(q)
	if lerr != nil {
		return lerr
	}
	ctx, m := r.Context(), merchantFrom(r.Context())
	where, args := `merchant_id = $1`, []any{m.ID}
	add := func(cond string, v any) {
		args = append(args, v)
		where += fmt.Sprintf(" AND "+cond, len(args))
	}
	var fields []FieldError
	if q.Has("seller_id") {
		if id, ok := parseUUID(q.Get("seller_id")); ok {
			add("seller_id = $%d", id)
		} else {
			fields = append(fields, FieldError{Field: "seller_id", Code: FieldInvalidUUID, Detail: "seller_id is a seller's id (a UUID)"})
		}
	}
	if q.Has("status") {
		if st := q.Get("status"); containsString(payoutStatuses, st) {
			add("status = $%d", st)
		} else {
			fields = append(fields, FieldError{Field: "status", Code: FieldInvalidEnum, Detail: "status is created, sent, paid, failed or canceled"})
		}
	}
	if q.Has("created_after") {
		if at, err := time.Parse(time.RFC3339Nano, q.Get("created_after")); err == nil {
			add("created_at > $%d", at)
		} else {
			fields = append(fields, FieldError{Field: "created_after", Code: FieldInvalidTimestamp, Detail: "created_after is an RFC 3339 timestamp"})
		}
	}
	if len(fields) > 0 {
		return &apiError{code: CodeInvalidParameter, detail: "the query has invalid parameters; see errors", fields: fields}
	}
	at, after, ok, err := s.cursor(ctx, q, "payout", `SELECT created_at FROM payment.payouts WHERE id = $1 AND merchant_id = $2`, m.ID)
	if err != nil {
		return err
	}
	if ok {
		args = append(args, at, after)
		where += fmt.Sprintf(" AND (created_at, id) < ($%d, $%d)", len(args)-1, len(args))
	}
	args = append(args, limit+1)
	rows, err := s.pool.Query(ctx, payoutSelect+` WHERE `+where+` ORDER BY created_at DESC, id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return dbError(fmt.Errorf("read payouts: %w", err))
	}
	list, err := pgx.CollectRows(rows, scanPayout)
	if err != nil {
		return dbError(fmt.Errorf("read payouts: %w", err))
	}
	out := PayoutList{Object: "list"}
	out.Data, out.HasMore = page(list, limit)
	return writeJSON(w, http.StatusOK, out)
}
