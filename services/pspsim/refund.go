package pspsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/psp"
)

// refundRequest is the body of POST /v1/refunds.
type refundRequest struct {
	PaymentID         string `json:"payment_id"`
	AmountMinor       int64  `json:"amount_minor"`
	Currency          string `json:"currency"`
	MerchantReference string `json:"merchant_reference"`
	Reason            string `json:"reason"`
}

func (r refundRequest) validate() error {
	if msg := checkText(r.PaymentID, maxReferenceLen, true); msg != "" {
		return invalidParam("payment_id", "payment_id %s", msg)
	}
	if err := money.ValidAmount(r.AmountMinor); err != nil {
		return invalidParam("amount_minor", "amount_minor %d: want 1 to %d minor units", r.AmountMinor, money.MaxAmount)
	}
	if _, err := money.ParseCurrency(r.Currency); err != nil {
		return invalidParam("currency", "%v", err)
	}
	if msg := checkText(r.MerchantReference, maxReferenceLen, true); msg != "" {
		return invalidParam("merchant_reference", "merchant_reference %s", msg)
	}
	if msg := checkText(r.Reason, maxDescriptionLen, false); msg != "" {
		return invalidParam("reason", "reason %s", msg)
	}
	return nil
}

// Refund statuses: the simulator refunds synchronously, so every refund it
// stores has succeeded.
const refundSucceeded = "succeeded"

// refundRow is one row of pspsim.refunds.
type refundRow struct {
	Seq                                                int64
	ID, PaymentID, Reference, Currency, Reason, Status string
	Amount                                             int64
	IdempotencyKey                                     string
	Created, Updated                                   time.Time
}

const refundCols = `seq, id, payment_id, merchant_reference, amount_minor, currency, reason, status, idempotency_key, created_at, updated_at`

func scanRefund(row pgx.Row) (refundRow, error) {
	var r refundRow
	err := row.Scan(&r.Seq, &r.ID, &r.PaymentID, &r.Reference, &r.Amount, &r.Currency, &r.Reason, &r.Status,
		&r.IdempotencyKey, &r.Created, &r.Updated)
	return r, err
}

func (r refundRow) view() psp.Refund {
	return psp.Refund{ID: r.ID, PaymentID: r.PaymentID, Status: r.Status, AmountMinor: r.Amount, Currency: r.Currency,
		MerchantReference: r.Reference, Created: r.Created.UTC(), Updated: r.Updated.UTC()}
}

type querier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

func getRefund(ctx context.Context, q querier, id string) (refundRow, error) {
	r, err := scanRefund(q.QueryRow(ctx, `SELECT `+refundCols+` FROM pspsim.refunds WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, problemf(codeNotFound, "no refund %q", id)
	}
	return r, err
}

// claimRequestKey is claimKey for refunds and payouts (their keys have a
// table of their own, as the payments' keys point at payments). The
// fingerprint includes the endpoint, so a refund key reused for a payout is
// idempotency_key_reused.
func claimRequestKey(ctx context.Context, tx pgx.Tx, key, kind string, fp []byte, objectID string) (existing string, err error) {
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+lockTimeout+"'"); err != nil {
		return "", err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO pspsim.request_keys (key, kind, fingerprint, object_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (key) DO NOTHING`, key, kind, fp, objectID)
	if err != nil {
		return "", lockError(err)
	}
	if tag.RowsAffected() == 1 {
		return "", nil
	}
	var storedFP []byte
	var storedKind string
	if err := tx.QueryRow(ctx, `SELECT kind, fingerprint, object_id FROM pspsim.request_keys WHERE key = $1`, key).Scan(&storedKind, &storedFP, &existing); err != nil {
		return "", fmt.Errorf("read idempotency key: %w", err)
	}
	if storedKind != kind || !bytes.Equal(storedFP, fp) {
		return "", problemf(codeIdempotencyKeyReused, "this Idempotency-Key was used with a different request; use a new key for a new request")
	}
	return existing, nil
}

// refund runs POST /v1/refunds in one transaction: the key, the check of
// what is still refundable under the charge's row lock, the charge's
// running total (whose CHECK is the last word) and the refund row.
func (s *Server) refund(ctx context.Context, key string, fp []byte, req refundRequest) (refundRow, bool, error) {
	id := newID("re_")
	var out refundRow
	replayed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		existing, err := claimRequestKey(ctx, tx, key, "refund", fp, id)
		if err != nil {
			return err
		}
		if existing != "" {
			replayed = true
			out, err = getRefund(ctx, tx, existing)
			return err
		}
		var status, currency string
		err = tx.QueryRow(ctx, `SELECT status, currency FROM pspsim.payments WHERE id = $1`, req.PaymentID).Scan(&status, &currency)
		if errors.Is(err, pgx.ErrNoRows) {
			return problemf(codeNotFound, "no payment %q", req.PaymentID)
		}
		if err != nil {
			return err
		}
		if status != statusSucceeded {
			return problemf(codeUnexpectedState, "payment %s is %s; only a succeeded payment can be refunded", req.PaymentID, status)
		}
		if currency != req.Currency {
			e := problemf(codeCurrencyMismatch, "payment %s is in %s, the refund in %s", req.PaymentID, currency, req.Currency)
			e.param = "currency"
			return e
		}
		// The row lock serialises the refunds of one charge: the second of
		// two concurrent refunds sees the first's total.
		var charged, refunded int64
		if err := tx.QueryRow(ctx, `SELECT amount_minor, refunded_minor FROM pspsim.charges WHERE payment_id = $1 FOR UPDATE`,
			req.PaymentID).Scan(&charged, &refunded); err != nil {
			return lockError(fmt.Errorf("lock charge %s: %w", req.PaymentID, err))
		}
		if req.AmountMinor > charged-refunded {
			e := problemf(codeAmountTooLarge, "payment %s: %d of %d %s already refunded; at most %d can be refunded",
				req.PaymentID, refunded, charged, currency, charged-refunded)
			e.param = "amount_minor"
			return e
		}
		if _, err := tx.Exec(ctx, `UPDATE pspsim.charges SET refunded_minor = refunded_minor + $2 WHERE payment_id = $1`,
			req.PaymentID, req.AmountMinor); err != nil {
			return fmt.Errorf("refund %s: charge total: %w", req.PaymentID, err)
		}
		out, err = scanRefund(tx.QueryRow(ctx, `INSERT INTO pspsim.refunds
(id, payment_id, merchant_reference, amount_minor, currency, reason, status, idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+refundCols,
			id, req.PaymentID, req.MerchantReference, req.AmountMinor, req.Currency, req.Reason, refundSucceeded, key))
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.ConstraintName == "refunds_merchant_reference_uq" {
				return duplicateObjectReference("refund", req.MerchantReference)
			}
			return lockError(err)
		}
		return nil
	})
	if err != nil {
		return refundRow{}, false, err
	}
	return out, replayed, nil
}

func duplicateObjectReference(kind, ref string) error {
	e := problemf(codeDuplicateReference, "a %s with merchant_reference %q exists under another Idempotency-Key", kind, ref)
	e.param = "merchant_reference"
	return e
}

func (s *Server) handleCreateRefund(w http.ResponseWriter, r *http.Request) {
	key, req, ok := decodeCreate[refundRequest](s, w, r)
	if !ok {
		return
	}
	if err := s.beforeWork(r.Context(), kindRefund); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := workContext(r)
	defer cancel()
	rf, replayed, err := s.refund(ctx, key, fingerprint("POST /v1/refunds", req), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !replayed {
		s.log.Info("refund succeeded", "refund_id", rf.ID, "payment_id", rf.PaymentID, "merchant_reference", rf.Reference,
			"amount_minor", rf.Amount, "currency", rf.Currency)
	}
	s.respond(w, r, http.StatusCreated, rf.view(), replayed, kindRefund, "refund_id", rf.ID)
}

func (s *Server) handleGetRefund(w http.ResponseWriter, r *http.Request) {
	rf, err := getRefund(r.Context(), s.pool, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rf.view())
}

// RefundsPage is the body of GET /v1/refunds.
type RefundsPage struct {
	Refunds []psp.Refund `json:"refunds"`
	HasMore bool         `json:"has_more"`
}

// objectFilter is the query of GET /v1/refunds and /v1/payouts: exact
// filters and a limit, oldest first.
type objectFilter struct {
	filters map[string]string
	limit   int
}

func parseObjectFilter(q url.Values, allowed ...string) (objectFilter, error) {
	of := objectFilter{filters: map[string]string{}, limit: defaultListLimit}
	for k, vs := range q {
		if len(vs) != 1 {
			return of, invalidParam(k, "%s: give it once", k)
		}
		v := vs[0]
		if k == "limit" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxListLimit {
				return of, invalidParam(k, "limit: want 1 to %d", maxListLimit)
			}
			of.limit = n
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return of, invalidParam(k, "unknown parameter %q", k)
		}
		if msg := checkText(v, maxReferenceLen, true); msg != "" {
			return of, invalidParam(k, "%s %s", k, msg)
		}
		of.filters[k] = v
	}
	return of, nil
}

func (of objectFilter) get(k string) *string {
	if v, ok := of.filters[k]; ok {
		return &v
	}
	return nil
}

func (s *Server) handleListRefunds(w http.ResponseWriter, r *http.Request) {
	of, err := parseObjectFilter(r.URL.Query(), "merchant_reference", "payment_id")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.pool.Query(r.Context(), `SELECT `+refundCols+` FROM pspsim.refunds
WHERE ($1::text IS NULL OR merchant_reference = $1) AND ($2::text IS NULL OR payment_id = $2)
ORDER BY created_at, id LIMIT $3`, of.get("merchant_reference"), of.get("payment_id"), of.limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (refundRow, error) { return scanRefund(r) })
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page := RefundsPage{Refunds: []psp.Refund{}}
	for i, rf := range rs {
		if i == of.limit {
			page.HasMore = true
			break
		}
		page.Refunds = append(page.Refunds, rf.view())
	}
	writeJSON(w, http.StatusOK, page)
}

// RefundRecord is one row of the refund log (GET /admin/refunds).
type RefundRecord struct {
	Seq               int64     `json:"seq"`
	ID                string    `json:"id"`
	PaymentID         string    `json:"payment_id"`
	MerchantReference string    `json:"merchant_reference"`
	AmountMinor       int64     `json:"amount_minor"`
	Currency          string    `json:"currency"`
	Reason            string    `json:"reason"`
	Status            string    `json:"status"`
	IdempotencyKey    string    `json:"idempotency_key"`
	Created           time.Time `json:"created"`
}

// RefundRecordsPage is the body of GET /admin/refunds.
type RefundRecordsPage struct {
	Refunds []RefundRecord `json:"refunds"`
	HasMore bool           `json:"has_more"`
}

// handleAdminRefunds lists the refund log by seq, optionally for one
// payment or merchant reference.
func (s *Server) handleAdminRefunds(w http.ResponseWriter, r *http.Request) {
	aq, err := parseAdminQuery(r.URL.Query(), "merchant_reference", "payment_id")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.pool.Query(r.Context(), `SELECT `+refundCols+` FROM pspsim.refunds
WHERE ($1::text IS NULL OR merchant_reference = $1) AND ($2::text IS NULL OR payment_id = $2) AND seq > $3
ORDER BY seq LIMIT $4`, aq.filter("merchant_reference"), aq.filter("payment_id"), aq.after, aq.limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (refundRow, error) { return scanRefund(r) })
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page := RefundRecordsPage{Refunds: []RefundRecord{}}
	for i, rf := range rs {
		if i == aq.limit {
			page.HasMore = true
			break
		}
		page.Refunds = append(page.Refunds, RefundRecord{Seq: rf.Seq, ID: rf.ID, PaymentID: rf.PaymentID,
			MerchantReference: rf.Reference, AmountMinor: rf.Amount, Currency: rf.Currency, Reason: rf.Reason,
			Status: rf.Status, IdempotencyKey: rf.IdempotencyKey, Created: rf.Created.UTC()})
	}
	writeJSON(w, http.StatusOK, page)
}
