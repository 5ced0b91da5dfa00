package pspsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/psp"
)

// PSP-side payment statuses (the simulator's own words; psp.HTTPClient maps
// requires_payment_method to psp.StatusRequiresAction).
const (
	statusRequiresPaymentMethod = "requires_payment_method"
	statusProcessing            = "processing"
	statusSucceeded             = "succeeded"
	statusFailed                = "failed"
)

// lockTimeout bounds how long a request waits for another request holding
// the same idempotency key (or payment) before it is told to retry: the
// holder's transaction makes no external calls, so this is generous.
const lockTimeout = "10s"

// payment is one row of pspsim.payments.
type payment struct {
	ID, Reference, Currency, Description, ReturnURL string
	Amount                                          int64
	Status, FailureCode, CardBrand, CardLast4       string
	PageToken, IdempotencyKey                       string
	Expired                                         bool // unpaid past expires_at
	Created, Updated                                time.Time
}

const paymentCols = `id, merchant_reference, amount_minor, currency, description, coalesce(return_url, ''),
status, coalesce(failure_code, ''), coalesce(card_brand, ''), coalesce(card_last4, ''),
coalesce(page_token, ''), idempotency_key, coalesce(expires_at <= clock_timestamp(), false), created_at, updated_at`

func scanPayment(row pgx.Row) (payment, error) {
	var p payment
	err := row.Scan(&p.ID, &p.Reference, &p.Amount, &p.Currency, &p.Description, &p.ReturnURL,
		&p.Status, &p.FailureCode, &p.CardBrand, &p.CardLast4,
		&p.PageToken, &p.IdempotencyKey, &p.Expired, &p.Created, &p.Updated)
	return p, err
}

// view is the payment as the API and webhooks show it. The hosted page's
// URL is shown only while the buyer can still pay.
func (s *Server) view(p payment) psp.Payment {
	v := psp.Payment{
		ID:                p.ID,
		Status:            p.Status,
		AmountMinor:       p.Amount,
		Currency:          p.Currency,
		MerchantReference: p.Reference,
		FailureCode:       p.FailureCode,
		Created:           p.Created.UTC(),
		Updated:           p.Updated.UTC(),
	}
	if p.CardLast4 != "" {
		v.Card = &psp.Card{Brand: p.CardBrand, Last4: p.CardLast4}
	}
	if p.Status == statusRequiresPaymentMethod && p.PageToken != "" {
		v.RedirectURL = s.cfg.PublicURL + "/pay/" + p.PageToken
	}
	return v
}

// claimKey inserts the idempotency key in tx. If the key exists (a
// concurrent holder is waited for by the INSERT itself), it returns the
// payment the key points at, or errKeyReused when the request differs.
func claimKey(ctx context.Context, tx pgx.Tx, key string, fp []byte, paymentID string) (existing string, err error) {
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+lockTimeout+"'"); err != nil {
		return "", err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO pspsim.idempotency_keys (key, fingerprint, payment_id) VALUES ($1, $2, $3)
ON CONFLICT (key) DO NOTHING`, key, fp, paymentID)
	if err != nil {
		return "", lockError(err)
	}
	if tag.RowsAffected() == 1 {
		return "", nil
	}
	var storedFP []byte
	if err := tx.QueryRow(ctx, `SELECT fingerprint, payment_id FROM pspsim.idempotency_keys WHERE key = $1`, key).Scan(&storedFP, &existing); err != nil {
		return "", fmt.Errorf("read idempotency key: %w", err)
	}
	if !bytes.Equal(storedFP, fp) {
		return "", problemf(codeIdempotencyKeyReused, "this Idempotency-Key was used with a different request; use a new key for a new request")
	}
	return existing, nil
}

func lockError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available
		return &apiError{code: codeIdempotencyKeyInUse, detail: "another request with this Idempotency-Key is still running", retryAfter: 1, cause: err}
	}
	return err
}

func getPayment(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id string) (payment, error) {
	p, err := scanPayment(q.QueryRow(ctx, `SELECT `+paymentCols+` FROM pspsim.payments WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, problemf(codeNotFound, "no payment %q", id)
	}
	return p, err
}

// create runs POST /v1/payments in one transaction: the idempotency key, the
// payment, in direct mode the charge and its log row, and the webhook events
// commit together or not at all. It reports whether the answer is a replay.
func (s *Server) create(ctx context.Context, key string, fp []byte, req createRequest) (payment, bool, error) {
	id := newID("pay_")
	var p payment
	replayed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		existing, err := claimKey(ctx, tx, key, fp, id)
		if err != nil {
			return err
		}
		if existing != "" {
			replayed = true
			p, err = getPayment(ctx, tx, existing)
			return err
		}
		var token *string
		if !req.Confirm {
			t := newID("") // 128 random bits
			token = &t
		}
		p, err = scanPayment(tx.QueryRow(ctx, `INSERT INTO pspsim.payments
(id, merchant_reference, amount_minor, currency, description, return_url, status, page_token, idempotency_key, expires_at)
VALUES ($1, $2, $3, $4, $5, nullif($6, ''), $7, $8, $9, CASE WHEN $8::text IS NULL THEN NULL ELSE clock_timestamp() + $10::interval END)
RETURNING `+paymentCols,
			id, req.MerchantReference, req.AmountMinor, req.Currency, req.Description, req.ReturnURL,
			statusRequiresPaymentMethod, token, key, s.cfg.HostedTTL))
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.ConstraintName == "payments_merchant_reference_uq" {
				return duplicateReference(req.MerchantReference)
			}
			return lockError(err)
		}
		if req.Confirm {
			o, _ := methodOutcome(req.PaymentMethod) // validated
			p, err = s.chargeTx(ctx, tx, p, o, key)
		}
		return err
	})
	if err != nil {
		return payment{}, false, err
	}
	if !replayed && req.Confirm {
		s.wakeSender()
	}
	return p, replayed, nil
}

func duplicateReference(ref string) error {
	e := problemf(codeDuplicateReference, "a payment with merchant_reference %q exists; the simulator allows one payment per reference", ref)
	e.param = "merchant_reference"
	return e
}

// confirm runs POST /v1/payments/{id}/confirm: it charges a payment waiting
// for a payment method, in one transaction with its idempotency key.
func (s *Server) confirm(ctx context.Context, key string, fp []byte, id string, o outcome) (payment, bool, error) {
	var p payment
	replayed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		existing, err := claimKey(ctx, tx, key, fp, id)
		if err != nil {
			return err
		}
		if existing != "" {
			replayed = true
			p, err = getPayment(ctx, tx, existing)
			return err
		}
		p, err = scanPayment(tx.QueryRow(ctx, `SELECT `+paymentCols+` FROM pspsim.payments WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return problemf(codeNotFound, "no payment %q", id)
		}
		if err != nil {
			return lockError(err)
		}
		if p.Status != statusRequiresPaymentMethod || p.Expired {
			status := p.Status
			if p.Expired {
				status = "expired"
			}
			return problemf(codeUnexpectedState, "payment %s is %s; only a payment in requires_payment_method can be confirmed", id, status)
		}
		p, err = s.chargeTx(ctx, tx, p, o, key)
		return err
	})
	if err != nil {
		return payment{}, false, err
	}
	if !replayed {
		s.wakeSender()
	}
	return p, replayed, nil
}

// chargeTx charges p, which the caller has locked (or just inserted) in
// requires_payment_method: it moves the payment to succeeded or failed,
// writes the charge log row when money moved, and queues the processing and
// final webhooks. The status guard in the UPDATE and UNIQUE (payment_id) on
// the charge log make a second charge impossible even if a caller forgets
// the lock.
func (s *Server) chargeTx(ctx context.Context, tx pgx.Tx, p payment, o outcome, key string) (payment, error) {
	if o.failure == "" && s.faults.decline() {
		o.failure = failureDeclined
	}
	status := statusSucceeded
	if o.failure != "" {
		status = statusFailed
	}
	charged, err := scanPayment(tx.QueryRow(ctx, `UPDATE pspsim.payments
SET status = $2, failure_code = nullif($3, ''), card_brand = $4, card_last4 = $5, updated_at = clock_timestamp()
WHERE id = $1 AND status = 'requires_payment_method'
RETURNING `+paymentCols, p.ID, status, o.failure, o.brand, o.last4))
	if errors.Is(err, pgx.ErrNoRows) {
		return payment{}, fmt.Errorf("charge %s: payment is no longer waiting for a payment method", p.ID)
	}
	if err != nil {
		return payment{}, fmt.Errorf("charge %s: %w", p.ID, err)
	}
	if status == statusSucceeded {
		// The fee is fixed now, at the rate in force: settlement files report
		// it as charged, whatever the rate later becomes.
		fee, err := money.Fee(p.Amount, s.cfg.FeeBPS)
		if err != nil {
			return payment{}, fmt.Errorf("charge %s: fee: %w", p.ID, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pspsim.charges
(payment_id, idempotency_key, merchant_reference, amount_minor, currency, card_brand, card_last4, fee_minor, fee_bps)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, p.ID, key, p.Reference, p.Amount, p.Currency, o.brand, o.last4, fee, s.cfg.FeeBPS); err != nil {
			return payment{}, fmt.Errorf("charge %s: log: %w", p.ID, err)
		}
	}
	processing := charged
	processing.Status, processing.FailureCode = statusProcessing, ""
	if err := s.queueEvent(ctx, tx, processing, psp.EventPaymentProcessing, 0); err != nil {
		return payment{}, err
	}
	typ, delay := psp.EventPaymentSucceeded, time.Duration(0)
	if status == statusFailed {
		typ = psp.EventPaymentFailed
	}
	if o.delayed {
		delay = s.cfg.DelayedWebhook
	}
	if err := s.queueEvent(ctx, tx, charged, typ, delay); err != nil {
		return payment{}, err
	}
	s.log.Info("payment charged", "payment_id", p.ID, "merchant_reference", p.Reference,
		"status", status, "failure_code", o.failure, "card_brand", o.brand, "card_last4", o.last4)
	return charged, nil
}

// queueEvent writes a webhook event for the payment's current state in tx,
// due after delay. The body is fixed now: every attempt and every duplicate
// sends the same bytes.
func (s *Server) queueEvent(ctx context.Context, tx pgx.Tx, p payment, typ string, delay time.Duration) error {
	ev := psp.Event{ID: newID("evt_"), Type: typ, Created: time.Now().UTC(), Data: s.view(p)}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO pspsim.webhook_events (id, payment_id, type, body, next_attempt_at)
VALUES ($1, $2, $3, $4, clock_timestamp() + $5::interval)`, ev.ID, p.ID, typ, string(body), delay); err != nil {
		return fmt.Errorf("queue %s event: %w", typ, err)
	}
	return nil
}

// listParams are GET /v1/payments's filters, all optional and combined.
type listParams struct {
	reference     string
	createdAfter  *time.Time
	startingAfter string
	limit         int
}

func (s *Server) list(ctx context.Context, lp listParams) (psp.Page, error) {
	var after *time.Time
	var afterID *string
	if lp.startingAfter != "" {
		var t time.Time
		err := s.pool.QueryRow(ctx, `SELECT created_at FROM pspsim.payments WHERE id = $1`, lp.startingAfter).Scan(&t)
		if errors.Is(err, pgx.ErrNoRows) {
			return psp.Page{}, invalidParam("starting_after", "no payment %q", lp.startingAfter)
		}
		if err != nil {
			return psp.Page{}, err
		}
		after, afterID = &t, &lp.startingAfter
	}
	var ref *string
	if lp.reference != "" {
		ref = &lp.reference
	}
	rows, err := s.pool.Query(ctx, `SELECT `+paymentCols+` FROM pspsim.payments
WHERE ($1::text IS NULL OR merchant_reference = $1)
  AND ($2::timestamptz IS NULL OR created_at > $2)
  AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4::text))
ORDER BY created_at, id LIMIT $5`, ref, lp.createdAfter, after, afterID, lp.limit+1)
	if err != nil {
		return psp.Page{}, err
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment, error) { return scanPayment(r) })
	if err != nil {
		return psp.Page{}, err
	}
	page := psp.Page{Payments: make([]psp.Payment, 0, min(len(ps), lp.limit))}
	for i, p := range ps {
		if i == lp.limit {
			page.HasMore = true
			break
		}
		page.Payments = append(page.Payments, s.view(p))
	}
	return page, nil
}
