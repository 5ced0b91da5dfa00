package pspsim

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/services/psp"
)

// Charge is one row of the charge log (GET /admin/charges): a charge that
// moved money. There is at most one per payment.
type Charge struct {
	ID                int64     `json:"id"`
	PaymentID         string    `json:"payment_id"`
	IdempotencyKey    string    `json:"idempotency_key"`
	MerchantReference string    `json:"merchant_reference"`
	AmountMinor       int64     `json:"amount_minor"`
	Currency          string    `json:"currency"`
	Card              psp.Card  `json:"card"`
	FeeMinor          int64     `json:"fee_minor"`
	FeeBPS            int       `json:"fee_bps"`
	RefundedMinor     int64     `json:"refunded_minor"`
	ChargedAt         time.Time `json:"charged_at"`
}

// ChargesPage is the body of GET /admin/charges.
type ChargesPage struct {
	Charges []Charge `json:"charges"`
	HasMore bool     `json:"has_more"`
}

// WebhookEvent is a webhook event's delivery state (GET /admin/webhooks).
type WebhookEvent struct {
	Seq        int64      `json:"seq"`
	ID         string     `json:"id"`
	PaymentID  string     `json:"payment_id,omitempty"`
	PayoutID   string     `json:"payout_id,omitempty"`
	Type       string     `json:"type"`
	State      string     `json:"state"` // pending, delivered, dead or dropped
	Attempts   int        `json:"attempts"`
	CopiesSent int        `json:"copies_sent"`
	LastStatus int        `json:"last_status,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	Created    time.Time  `json:"created"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// WebhookEventsPage is the body of GET /admin/webhooks.
type WebhookEventsPage struct {
	Events  []WebhookEvent `json:"events"`
	HasMore bool           `json:"has_more"`
}

const (
	maxAdminLimit     = 1000
	defaultAdminLimit = 100
)

func (s *Server) handleGetFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.faults.view())
}

func (s *Server) handleSetFaults(w http.ResponseWriter, r *http.Request) {
	var v FaultsView // "injected" is accepted and ignored, so a GET's body can be posted back
	if err := decodeJSON(w, r, &v); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := v.Faults.validate(); err != nil {
		s.writeError(w, r, problemf(codeInvalidRequest, "%v", err))
		return
	}
	s.faults.set(v.Faults)
	s.log.Info("faults set", "faults", v.Faults)
	writeJSON(w, http.StatusOK, s.faults.view())
}

// adminQuery reads the optional filters and paging of the admin listings.
type adminQuery struct {
	filters map[string]string
	after   int64
	limit   int
}

func parseAdminQuery(q url.Values, filters ...string) (adminQuery, error) {
	aq := adminQuery{filters: map[string]string{}, limit: defaultAdminLimit}
	allowed := map[string]bool{}
	for _, f := range filters {
		allowed[f] = true
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return aq, invalidParam(k, "%s: give it once", k)
		}
		v := vs[0]
		switch {
		case k == "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxAdminLimit {
				return aq, invalidParam(k, "limit: want 1 to %d", maxAdminLimit)
			}
			aq.limit = n
		case k == "starting_after":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return aq, invalidParam(k, "starting_after: want the id (seq) of the last row of the previous page")
			}
			aq.after = n
		case allowed[k]:
			if msg := checkText(v, maxReferenceLen, true); msg != "" {
				return aq, invalidParam(k, "%s %s", k, msg)
			}
			aq.filters[k] = v
		default:
			return aq, invalidParam(k, "unknown parameter %q", k)
		}
	}
	return aq, nil
}

func (aq adminQuery) filter(k string) *string {
	if v, ok := aq.filters[k]; ok {
		return &v
	}
	return nil
}

// handleCharges lists the charge log, oldest first, optionally for one
// merchant reference or payment: how tests prove "charged at most once".
func (s *Server) handleCharges(w http.ResponseWriter, r *http.Request) {
	aq, err := parseAdminQuery(r.URL.Query(), "merchant_reference", "payment_id")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.charges(r.Context(), aq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) charges(ctx context.Context, aq adminQuery) (ChargesPage, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, payment_id, idempotency_key, merchant_reference, amount_minor, currency,
card_brand, card_last4, fee_minor, fee_bps, refunded_minor, charged_at FROM pspsim.charges
WHERE ($1::text IS NULL OR merchant_reference = $1) AND ($2::text IS NULL OR payment_id = $2) AND id > $3
ORDER BY id LIMIT $4`, aq.filter("merchant_reference"), aq.filter("payment_id"), aq.after, aq.limit+1)
	if err != nil {
		return ChargesPage{}, err
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Charge, error) {
		var c Charge
		err := r.Scan(&c.ID, &c.PaymentID, &c.IdempotencyKey, &c.MerchantReference, &c.AmountMinor, &c.Currency,
			&c.Card.Brand, &c.Card.Last4, &c.FeeMinor, &c.FeeBPS, &c.RefundedMinor, &c.ChargedAt)
		c.ChargedAt = c.ChargedAt.UTC()
		return c, err
	})
	if err != nil {
		return ChargesPage{}, err
	}
	page := ChargesPage{Charges: cs}
	if len(cs) > aq.limit {
		page.Charges, page.HasMore = cs[:aq.limit], true
	}
	return page, nil
}

// handleWebhookEvents lists webhook events and their delivery state, oldest
// first, optionally for one payment or in one state.
func (s *Server) handleWebhookEvents(w http.ResponseWriter, r *http.Request) {
	aq, err := parseAdminQuery(r.URL.Query(), "payment_id", "payout_id", "state")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.pool.Query(r.Context(), `SELECT seq, id, coalesce(payment_id, ''), coalesce(payout_id, ''), type, state, attempts, copies_sent,
coalesce(last_status, 0), coalesce(last_error, ''), created_at, finished_at FROM pspsim.webhook_events
WHERE ($1::text IS NULL OR payment_id = $1) AND ($2::text IS NULL OR state = $2) AND seq > $3
  AND ($5::text IS NULL OR payout_id = $5)
ORDER BY seq LIMIT $4`, aq.filter("payment_id"), aq.filter("state"), aq.after, aq.limit+1, aq.filter("payout_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WebhookEvent, error) {
		var e WebhookEvent
		err := r.Scan(&e.Seq, &e.ID, &e.PaymentID, &e.PayoutID, &e.Type, &e.State, &e.Attempts, &e.CopiesSent,
			&e.LastStatus, &e.LastError, &e.Created, &e.FinishedAt)
		return e, err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page := WebhookEventsPage{Events: evs}
	if len(evs) > aq.limit {
		page.Events, page.HasMore = evs[:aq.limit], true
	}
	writeJSON(w, http.StatusOK, page)
}
