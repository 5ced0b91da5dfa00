package payment

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/outbox"
)

// Checkout limits.
const (
	// MaxOrdersPerCheckout bounds a checkout's payment orders (one per seller).
	MaxOrdersPerCheckout = 50
	maxBuyerIDLen        = 255
	maxPaymentMethodLen  = 100
	maxReturnURLLen      = 2048
	// List page sizes.
	defaultListLimit = 20
	maxListLimit     = 100
)

// Checkout is the API's checkout object.
type Checkout struct {
	ID          uuid.UUID      `json:"id"`
	Status      string         `json:"status"`
	Currency    string         `json:"currency"`
	AmountMinor int64          `json:"amount_minor"`
	Mode        string         `json:"mode"`
	BuyerID     string         `json:"buyer_id"`
	ReturnURL   string         `json:"return_url,omitempty"`
	FailureCode string         `json:"failure_code,omitempty"`
	Orders      []PaymentOrder `json:"orders"`
	NextAction  *NextAction    `json:"next_action,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
}

// PaymentOrder is one seller's part of a checkout. fee_minor is the
// platform's fee at the merchant's rate, net_minor the seller's share:
// fee_minor + net_minor = amount_minor.
type PaymentOrder struct {
	ID          uuid.UUID   `json:"id"`
	CheckoutID  uuid.UUID   `json:"checkout_id"`
	SellerID    uuid.UUID   `json:"seller_id"`
	Currency    string      `json:"currency"`
	AmountMinor int64       `json:"amount_minor"`
	FeeMinor    int64       `json:"fee_minor"`
	NetMinor    int64       `json:"net_minor"`
	Status      string      `json:"status"`
	FailureCode string      `json:"failure_code,omitempty"`
	NextAction  *NextAction `json:"next_action,omitempty"`
	// FulfilledAt is when the merchant reported the order delivered
	// (null before): from then on the seller's funds are available.
	FulfilledAt *time.Time `json:"fulfilled_at"`
	// RefundedMinor is the sum of the order's refunds that have not
	// failed (pending or succeeded): amount_minor − refunded_minor is what
	// can still be refunded.
	RefundedMinor int64     `json:"refunded_minor"`
	CreatedAt     time.Time `json:"created_at"`
}

// NextAction tells the client what the buyer must do next: for hosted
// checkouts waiting for the buyer, go to the PSP's payment page.
type NextAction struct {
	Type        string `json:"type"`
	RedirectURL string `json:"redirect_url"`
}

// NextActionRedirect is the only NextAction type so far.
const NextActionRedirect = "redirect_to_url"

func nextAction(status string, redirectURL *string) *NextAction {
	if status != StatusRequiresAction || redirectURL == nil || *redirectURL == "" {
		return nil
	}
	return &NextAction{Type: NextActionRedirect, RedirectURL: *redirectURL}
}

// CheckoutList is a page of checkouts, newest first.
type CheckoutList struct {
	Data    []Checkout `json:"data"`
	HasMore bool       `json:"has_more"`
}

// amountField decodes an amount leniently so that validation can say
// precisely what is wrong with it, with the field's path: encoding/json
// would report 10.5, "100", 1e3 and 2^63 all as one type error.
type amountField struct {
	set    bool
	v      int64
	code   string
	detail string
}

func (a *amountField) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	a.set = true
	s := string(b)
	switch {
	case strings.HasPrefix(s, `"`):
		a.code, a.detail = FieldAmountNotInteger, "amounts are JSON integers of minor units, not strings"
		return nil
	case strings.ContainsAny(s, ".eE"):
		a.code, a.detail = FieldAmountNotInteger, "amounts are integers of minor units (no fraction or exponent): 10.50 USD is 1050"
		return nil
	case s == "" || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')):
		a.code, a.detail = FieldAmountNotInteger, "amounts are JSON integers of minor units"
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if strings.HasPrefix(s, "-") {
			a.code, a.detail = FieldAmountNotPositive, "amounts must be positive"
		} else {
			a.code, a.detail = FieldAmountTooLarge, fmt.Sprintf("amounts are at most %d minor units", money.MaxAmount)
		}
		return nil
	}
	a.v = v
	return nil
}

type orderRequest struct {
	SellerID    string      `json:"seller_id"`
	AmountMinor amountField `json:"amount_minor"`
}

type createCheckoutRequest struct {
	BuyerID       string         `json:"buyer_id"`
	Currency      string         `json:"currency"`
	Mode          string         `json:"mode"`
	PaymentMethod *string        `json:"payment_method"`
	ReturnURL     *string        `json:"return_url"`
	Orders        []orderRequest `json:"orders"`
}

// checkoutInput is a validated createCheckoutRequest.
type checkoutInput struct {
	buyerID       string
	currency      money.Currency
	mode          string
	paymentMethod string
	returnURL     string
	sellers       []uuid.UUID
	amounts       []int64
	total         int64
}

// validate checks everything that needs no database and reports every
// problem at once.
func (s *Service) validateCheckout(req createCheckoutRequest) (checkoutInput, []FieldError) {
	var in checkoutInput
	var errs []FieldError
	add := func(field, code, detail string) {
		errs = append(errs, FieldError{Field: field, Code: code, Detail: detail})
	}

	switch {
	case req.BuyerID == "":
		add("buyer_id", FieldRequired, "buyer_id is required: your identifier of the buyer")
	default:
		if why := validText(req.BuyerID, maxBuyerIDLen); why != "" {
			add("buyer_id", FieldInvalidString, "buyer_id "+why)
		}
		in.buyerID = req.BuyerID
	}

	if req.Currency == "" {
		add("currency", FieldRequired, "currency is required: an upper-case ISO 4217 code such as USD")
	} else if c, err := money.ParseCurrency(req.Currency); err != nil {
		if up := strings.ToUpper(req.Currency); up != req.Currency {
			if _, err := money.ParseCurrency(up); err == nil {
				add("currency", FieldCurrencyNotUpperCase, fmt.Sprintf("currency codes are upper case: use %q", up))
			} else {
				add("currency", FieldCurrencyUnknown, fmt.Sprintf("%q is not a supported ISO 4217 currency", req.Currency))
			}
		} else {
			add("currency", FieldCurrencyUnknown, fmt.Sprintf("%q is not a supported ISO 4217 currency", req.Currency))
		}
	} else {
		in.currency = c
	}

	in.mode = req.Mode
	switch req.Mode {
	case contracts.ModeHosted:
		if req.PaymentMethod != nil {
			add("payment_method", FieldPaymentMethodNotAllowed, "hosted checkouts collect the payment method on the PSP's page; omit payment_method")
		}
		if req.ReturnURL == nil {
			add("return_url", FieldReturnURLRequired, "hosted checkouts need a return_url to send the buyer back to")
		}
	case contracts.ModeDirect:
		switch {
		case req.PaymentMethod == nil:
			add("payment_method", FieldPaymentMethodRequired, "direct checkouts need a payment_method token")
		case !validToken(*req.PaymentMethod, maxPaymentMethodLen):
			add("payment_method", FieldPaymentMethodInvalid, fmt.Sprintf("a payment_method is 1 to %d characters of A-Z, a-z, 0-9, _ and -", maxPaymentMethodLen))
		default:
			in.paymentMethod = *req.PaymentMethod
		}
	case "":
		add("mode", FieldRequired, `mode is required: "hosted" or "direct"`)
	default:
		add("mode", FieldInvalidMode, `mode is "hosted" or "direct"`)
	}
	if req.ReturnURL != nil {
		if code, detail := s.checkReturnURL(*req.ReturnURL); code != "" {
			add("return_url", code, detail)
		} else {
			in.returnURL = *req.ReturnURL
		}
	}

	switch n := len(req.Orders); {
	case req.Orders == nil:
		add("orders", FieldRequired, "orders is required: one {seller_id, amount_minor} per seller")
	case n == 0:
		add("orders", FieldTooFewItems, "a checkout has at least one order")
	case n > MaxOrdersPerCheckout:
		add("orders", FieldTooManyItems, fmt.Sprintf("a checkout has at most %d orders", MaxOrdersPerCheckout))
	default:
		seen := make(map[uuid.UUID]bool, n)
		amountsOK := true
		for i, o := range req.Orders {
			f := fmt.Sprintf("orders[%d].", i)
			switch id, ok := parseUUID(o.SellerID); {
			case o.SellerID == "":
				add(f+"seller_id", FieldRequired, "seller_id is required")
			case !ok:
				add(f+"seller_id", FieldInvalidUUID, "seller_id is a seller's id (a UUID)")
			case seen[id]:
				add(f+"seller_id", FieldDuplicateSeller, "a checkout has one order per seller")
			default:
				seen[id] = true
				in.sellers = append(in.sellers, id)
			}
			a := o.AmountMinor
			switch {
			case !a.set:
				add(f+"amount_minor", FieldRequired, "amount_minor is required (integer minor units)")
				amountsOK = false
			case a.code != "":
				add(f+"amount_minor", a.code, a.detail)
				amountsOK = false
			case a.v <= 0:
				add(f+"amount_minor", FieldAmountNotPositive, "amounts must be positive")
				amountsOK = false
			case a.v > money.MaxAmount:
				add(f+"amount_minor", FieldAmountTooLarge, fmt.Sprintf("amounts are at most %d minor units", money.MaxAmount))
				amountsOK = false
			default:
				in.amounts = append(in.amounts, a.v)
			}
		}
		if amountsOK {
			total, err := money.Sum(in.amounts...)
			if err != nil || total > money.MaxAmount {
				add("orders", FieldTotalTooLarge, fmt.Sprintf("the orders' total must be at most %d minor units", money.MaxAmount))
			}
			in.total = total
		}
	}
	return in, errs
}

// validToken checks an opaque token such as a payment method id.
func validToken(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkReturnURL accepts absolute https URLs (http only for localhost and
// 127.0.0.1, for development), without credentials, on an allowed host when
// Config.ReturnURLAllowedHosts is set (no open redirect, S10).
func (s *Service) checkReturnURL(raw string) (code, detail string) {
	if raw == "" || len(raw) > maxReturnURLLen {
		return FieldReturnURLInvalid, fmt.Sprintf("return_url must be an absolute URL of at most %d characters", maxReturnURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return FieldReturnURLInvalid, "return_url must be an absolute https URL"
	}
	if u.User != nil {
		return FieldReturnURLInvalid, "return_url must not contain credentials"
	}
	host := strings.ToLower(u.Hostname())
	switch u.Scheme {
	case "https":
	case "http":
		if host != "localhost" && host != "127.0.0.1" {
			return FieldReturnURLInsecure, "return_url must use https (http only for localhost)"
		}
	default:
		return FieldReturnURLInvalid, "return_url must be an absolute https URL"
	}
	if len(s.cfg.ReturnURLAllowedHosts) > 0 && !containsString(s.cfg.ReturnURLAllowedHosts, host) {
		return FieldReturnURLHostNotAllowed, fmt.Sprintf("return_url's host %q is not in this deployment's allow list", host)
	}
	return "", ""
}

// createCheckout validates a checkout and, in the claiming transaction,
// stores it, its orders, their creation transitions and the
// payments.checkout.created event.
func (s *Service) createCheckout(ctx context.Context, tx pgx.Tx, m merchantCtx, body []byte) (int, any, error) {
	var req createCheckoutRequest
	if err := decodeStrict(body, &req); err != nil {
		return 0, nil, err
	}
	in, errs := s.validateCheckout(req)
	if len(in.sellers) > 0 {
		// Another merchant's seller answers exactly like an unknown one.
		known := map[uuid.UUID]bool{}
		rows, err := tx.Query(ctx, `SELECT id FROM payment.sellers WHERE merchant_id = $1 AND id = ANY($2)`, m.ID, in.sellers)
		if err != nil {
			return 0, nil, dbError(fmt.Errorf("read sellers: %w", err))
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return 0, nil, dbError(fmt.Errorf("read sellers: %w", err))
		}
		for _, id := range ids {
			known[id] = true
		}
		for i, o := range req.Orders {
			if id, ok := parseUUID(o.SellerID); ok && !known[id] {
				errs = append(errs, FieldError{Field: fmt.Sprintf("orders[%d].seller_id", i), Code: FieldSellerNotFound, Detail: "no such seller"})
			}
		}
	}
	if len(errs) > 0 {
		return 0, nil, fieldErrors(errs...)
	}

	co := Checkout{Status: StatusCreated, Currency: in.currency.Code, AmountMinor: in.total, Mode: in.mode,
		BuyerID: in.buyerID, ReturnURL: in.returnURL, Orders: make([]PaymentOrder, len(in.amounts))}
	var err error
	if co.ID, err = uuid.NewV7(); err != nil {
		return 0, nil, internal(err)
	}
	for i, amount := range in.amounts {
		fee, err := money.Fee(amount, m.FeeBps)
		if err != nil {
			return 0, nil, internal(fmt.Errorf("fee of order %d: %w", i, err))
		}
		id, err := uuid.NewV7()
		if err != nil {
			return 0, nil, internal(err)
		}
		co.Orders[i] = PaymentOrder{ID: id, CheckoutID: co.ID, SellerID: in.sellers[i], Currency: co.Currency,
			AmountMinor: amount, FeeMinor: fee, NetMinor: amount - fee, Status: StatusCreated}
	}

	if err := tx.QueryRow(ctx, `INSERT INTO payment.checkouts
    (id, merchant_id, buyer_id, currency, amount_minor, mode, payment_method, return_url, status)
VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''), NULLIF($8, ''), $9) RETURNING created_at`,
		co.ID, m.ID, co.BuyerID, co.Currency, co.AmountMinor, co.Mode, in.paymentMethod, co.ReturnURL, co.Status).Scan(&co.CreatedAt); err != nil {
		return 0, nil, dbError(fmt.Errorf("insert checkout: %w", err))
	}
	co.CreatedAt = co.CreatedAt.UTC()
	n := len(co.Orders)
	ids, sellers := make([]uuid.UUID, n), make([]uuid.UUID, n)
	amounts, fees, nets := make([]int64, n), make([]int64, n), make([]int64, n)
	summaries := make([]contracts.OrderSummary, n)
	for i := range co.Orders {
		o := &co.Orders[i]
		o.CreatedAt = co.CreatedAt
		ids[i], sellers[i], amounts[i], fees[i], nets[i] = o.ID, o.SellerID, o.AmountMinor, o.FeeMinor, o.NetMinor
		summaries[i] = contracts.OrderSummary{PaymentOrderID: o.ID.String(), SellerID: o.SellerID.String(),
			AmountMinor: o.AmountMinor, FeeMinor: o.FeeMinor, NetMinor: o.NetMinor}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO payment.payment_orders
    (id, checkout_id, merchant_id, seller_id, currency, amount_minor, fee_minor, net_minor, status, created_at)
SELECT o.id, $1, $2, o.seller_id, $3, o.amount, o.fee, o.net, $4, $5
FROM unnest($6::uuid[], $7::uuid[], $8::bigint[], $9::bigint[], $10::bigint[]) AS o(id, seller_id, amount, fee, net)`,
		co.ID, m.ID, co.Currency, StatusCreated, co.CreatedAt, ids, sellers, amounts, fees, nets); err != nil {
		return 0, nil, dbError(fmt.Errorf("insert payment orders: %w", err))
	}
	// Creation is recorded as a transition from "" so that the transition
	// table holds every status an object ever had.
	if _, err := tx.Exec(ctx, `INSERT INTO payment.status_transitions (object_type, object_id, from_status, to_status, cause)
SELECT t, id, '', $1, 'created' FROM unnest($2::text[], $3::uuid[]) AS x(t, id)`,
		StatusCreated, append([]string{"checkout"}, repeat("payment_order", n)...), append([]uuid.UUID{co.ID}, ids...)); err != nil {
		return 0, nil, dbError(fmt.Errorf("insert status transitions: %w", err))
	}
	payload, err := json.Marshal(contracts.CheckoutCreated{
		CheckoutID: co.ID.String(), MerchantID: m.ID.String(), BuyerID: co.BuyerID, Currency: co.Currency,
		AmountMinor: co.AmountMinor, Mode: co.Mode, PaymentMethod: in.paymentMethod, ReturnURL: co.ReturnURL,
		Orders: summaries, CreatedAt: co.CreatedAt,
	})
	if err != nil {
		return 0, nil, internal(fmt.Errorf("encode event: %w", err))
	}
	if err := s.store.Write(ctx, tx, &outbox.Message{
		Subject:          contracts.SubjectCheckoutCreated,
		Type:             contracts.TypeOf(contracts.SubjectCheckoutCreated),
		Source:           contracts.SourcePayment,
		AggregateID:      co.ID.String(),
		AggregateVersion: 1, // the checkout row starts at version 1
		Payload:          payload,
	}); err != nil {
		return 0, nil, dbError(fmt.Errorf("write event: %w", err))
	}
	return http.StatusCreated, co, nil
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func (s *Service) getCheckout(w http.ResponseWriter, r *http.Request) error {
	if _, err := strictQuery(r); err != nil {
		return err
	}
	id, ok := parseUUID(r.PathValue("id"))
	if !ok {
		return notFound()
	}
	cos, err := s.loadCheckouts(r.Context(), merchantFrom(r.Context()).ID, `c.id = $2`, []any{id}, 1)
	if err != nil {
		return err
	}
	if len(cos) == 0 {
		return notFound()
	}
	return writeJSON(w, http.StatusOK, cos[0])
}

func (s *Service) listCheckouts(w http.ResponseWriter, r *http.Request) error {
	q, qerr := strictQuery(r, "limit", "starting_after")
	if qerr != nil {
		return qerr
	}
	limit, lerr := parseLimit(q)
	if lerr != nil {
		return lerr
	}
	ctx, m := r.Context(), merchantFrom(r.Context())
	at, after, ok, err := s.cursor(ctx, q, "checkout", `SELECT created_at FROM payment.checkouts WHERE id = $1 AND merchant_id = $2`, m.ID)
	if err != nil {
		return err
	}
	where, args := "true", []any{}
	if ok { // loadCheckouts numbers the merchant $1
		where, args = `(c.created_at, c.id) < ($2, $3)`, []any{at, after}
	}
	cos, err := s.loadCheckouts(ctx, m.ID, where, args, limit+1)
	if err != nil {
		return err
	}
	out := CheckoutList{}
	out.Data, out.HasMore = page(cos, limit)
	return writeJSON(w, http.StatusOK, out)
}

// loadCheckouts reads up to limit of the merchant's checkouts matching
// where (over alias c, parameters from $2), newest first, with their orders.
func (s *Service) loadCheckouts(ctx context.Context, merchantID uuid.UUID, where string, args []any, limit int) ([]Checkout, error) {
	args = append([]any{merchantID}, args...)
	args = append(args, limit)
	rows, err := s.pool.Query(ctx, `SELECT c.id, c.status, c.currency, c.amount_minor, c.mode, c.buyer_id,
    coalesce(c.return_url, ''), coalesce(c.failure_code, ''), c.redirect_url, c.created_at
FROM payment.checkouts c WHERE c.merchant_id = $1 AND `+where+`
ORDER BY c.created_at DESC, c.id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, dbError(fmt.Errorf("read checkouts: %w", err))
	}
	cos, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Checkout, error) {
		var c Checkout
		var redirect *string
		err := row.Scan(&c.ID, &c.Status, &c.Currency, &c.AmountMinor, &c.Mode, &c.BuyerID, &c.ReturnURL, &c.FailureCode, &redirect, &c.CreatedAt)
		c.CreatedAt = c.CreatedAt.UTC()
		c.NextAction = nextAction(c.Status, redirect)
		c.Orders = []PaymentOrder{}
		return c, err
	})
	if err != nil {
		return nil, dbError(fmt.Errorf("read checkouts: %w", err))
	}
	if len(cos) == 0 {
		return []Checkout{}, nil
	}
	ids := make([]uuid.UUID, len(cos))
	byID := make(map[uuid.UUID]*Checkout, len(cos))
	for i := range cos {
		ids[i] = cos[i].ID
		byID[cos[i].ID] = &cos[i]
	}
	// Bounded: at most maxListLimit+1 checkouts of at most
	// MaxOrdersPerCheckout orders each.
	orows, err := s.pool.Query(ctx, paymentOrderSelect+` WHERE po.checkout_id = ANY($1) AND po.merchant_id = $2
ORDER BY po.checkout_id, po.id`, ids, merchantID)
	if err != nil {
		return nil, dbError(fmt.Errorf("read payment orders: %w", err))
	}
	orders, err := pgx.CollectRows(orows, scanPaymentOrder)
	if err != nil {
		return nil, dbError(fmt.Errorf("read payment orders: %w", err))
	}
	for _, o := range orders {
		if c := byID[o.CheckoutID]; c != nil {
			c.Orders = append(c.Orders, o)
		}
	}
	return cos, nil
}

const paymentOrderSelect = `SELECT po.id, po.checkout_id, po.seller_id, po.currency, po.amount_minor, po.fee_minor,
    po.net_minor, po.status, coalesce(po.failure_code, ''), c.redirect_url, po.fulfilled_at, po.refunded_minor, po.created_at
FROM payment.payment_orders po JOIN payment.checkouts c ON c.id = po.checkout_id`

func scanPaymentOrder(row pgx.CollectableRow) (PaymentOrder, error) {
	var o PaymentOrder
	var redirect *string
	err := row.Scan(&o.ID, &o.CheckoutID, &o.SellerID, &o.Currency, &o.AmountMinor, &o.FeeMinor, &o.NetMinor,
		&o.Status, &o.FailureCode, &redirect, &o.FulfilledAt, &o.RefundedMinor, &o.CreatedAt)
	o.CreatedAt = o.CreatedAt.UTC()
	if o.FulfilledAt != nil {
		at := o.FulfilledAt.UTC()
		o.FulfilledAt = &at
	}
	o.NextAction = nextAction(o.Status, redirect)
	return o, err
}

func (s *Service) getPaymentOrder(w http.ResponseWriter, r *http.Request) error {
	if _, err := strictQuery(r); err != nil {
		return err
	}
	id, ok := parseUUID(r.PathValue("id"))
	if !ok {
		return notFound()
	}
	o, err := loadPaymentOrder(r.Context(), s.pool, merchantFrom(r.Context()).ID, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, o)
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// loadPaymentOrder reads one of the merchant's payment orders; another
// merchant's answers notFound like a missing one.
func loadPaymentOrder(ctx context.Context, q querier, merchantID, id uuid.UUID) (PaymentOrder, error) {
	rows, err := q.Query(ctx, paymentOrderSelect+` WHERE po.id = $1 AND po.merchant_id = $2`, id, merchantID)
	if err != nil {
		return PaymentOrder{}, dbError(fmt.Errorf("read payment order: %w", err))
	}
	o, err := pgx.CollectExactlyOneRow(rows, scanPaymentOrder)
	if errors.Is(err, pgx.ErrNoRows) {
		return PaymentOrder{}, notFound()
	}
	if err != nil {
		return PaymentOrder{}, dbError(fmt.Errorf("read payment order: %w", err))
	}
	return o, nil
}
