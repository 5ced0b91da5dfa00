package psp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTPClientConfig configures an HTTPClient.
type HTTPClientConfig struct {
	// BaseURL is the PSP API's root, e.g. http://127.0.0.1:8090. Required.
	BaseURL string
	// APIKey is sent as Authorization: Bearer <APIKey>. Required.
	APIKey string
	// Timeout bounds each call, on top of the caller's context: default 10s.
	Timeout time.Duration
	// HTTPClient sends the requests; default: a client of its own that does
	// not follow redirects. A client given here is used as is.
	HTTPClient *http.Client
}

// HTTPClient is Full (Client, RefundClient, PayoutClient, SettlementClient)
// over the HTTP API of paypipe's PSP simulator
// (services/pspsim), which follows the shape of Stripe's PaymentIntents.
//
// Errors follow the package's three outcomes: a transport error, a timeout,
// a 5xx, a redirect or a 2xx body that cannot be read all wrap
// ErrUnknownOutcome; a 4xx is an *Error with the problem body's code (404 is
// always Code "not_found"; a Retry-After header fills RetryAfterDelay). A
// 5xx's Retry-After is kept too (retry.RetryAfter finds it).
//
// HTTPClient makes exactly one HTTP request per call and never retries: an
// automatic retry here would hide attempts from the caller that counts them
// and, for a create, must decide between retrying and looking up.
type HTTPClient struct {
	base    *url.URL
	apiKey  string
	timeout time.Duration
	hc      *http.Client
}

var _ Client = (*HTTPClient)(nil)

// maxResponseBytes bounds what is read of any response.
const maxResponseBytes = 1 << 20

// NewHTTPClient validates cfg.
func NewHTTPClient(cfg HTTPClientConfig) (*HTTPClient, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("psp: BaseURL %q: want an absolute http(s) URL without query", cfg.BaseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if cfg.APIKey == "" {
		return nil, errors.New("psp: APIKey is required")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("psp: Timeout %s is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{
			// An API that redirects is misconfigured; following a redirect
			// would also carry the POST body somewhere unintended.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost:   32,
				IdleConnTimeout:       90 * time.Second,
				TLSHandshakeTimeout:   5 * time.Second,
				ResponseHeaderTimeout: cfg.Timeout,
			},
		}
	}
	return &HTTPClient{base: u, apiKey: cfg.APIKey, timeout: cfg.Timeout, hc: hc}, nil
}

// createBody is the JSON of POST /v1/payments.
type createBody struct {
	AmountMinor       int64  `json:"amount_minor"`
	Currency          string `json:"currency"`
	MerchantReference string `json:"merchant_reference"`
	Description       string `json:"description,omitempty"`
	ReturnURL         string `json:"return_url,omitempty"`
	Confirm           bool   `json:"confirm,omitempty"`
	PaymentMethod     string `json:"payment_method,omitempty"`
}

// CreatePayment creates (and with Confirm, charges) a payment; the
// idempotency key goes in the Idempotency-Key header. A declined charge is
// not an error: the payment comes back failed with its FailureCode.
func (c *HTTPClient) CreatePayment(ctx context.Context, req CreatePaymentRequest) (Payment, error) {
	if req.IdempotencyKey == "" {
		return Payment{}, errors.New("psp: CreatePayment: an idempotency key is required")
	}
	body, err := json.Marshal(createBody{
		AmountMinor: req.AmountMinor, Currency: req.Currency, MerchantReference: req.MerchantReference,
		Description: req.Description, ReturnURL: req.ReturnURL, Confirm: req.Confirm, PaymentMethod: req.PaymentMethod,
	})
	if err != nil {
		return Payment{}, fmt.Errorf("psp: CreatePayment: %w", err)
	}
	var p Payment
	if err := c.do(ctx, http.MethodPost, "/v1/payments", nil, req.IdempotencyKey, body, &p); err != nil {
		return Payment{}, fmt.Errorf("psp: CreatePayment %s: %w", req.MerchantReference, err)
	}
	if p.MerchantReference != req.MerchantReference || p.AmountMinor != req.AmountMinor || p.Currency != req.Currency {
		// The key returned someone else's payment, or the PSP changed our
		// amount: never act on that. Unknown, so the caller looks it up.
		return Payment{}, fmt.Errorf("psp: CreatePayment %s: %w: the answer (%s %d %s) does not match the request (%d %s)",
			req.MerchantReference, ErrUnknownOutcome, p.MerchantReference, p.AmountMinor, p.Currency, req.AmountMinor, req.Currency)
	}
	return p, nil
}

// ConfirmPayment charges a payment waiting for a payment method
// (server-to-server), under its own idempotency key. It is not part of
// Client: paypipe's hosted flow leaves confirmation to the buyer.
func (c *HTTPClient) ConfirmPayment(ctx context.Context, id, paymentMethod, idempotencyKey string) (Payment, error) {
	if id == "" || idempotencyKey == "" {
		return Payment{}, errors.New("psp: ConfirmPayment: a payment id and an idempotency key are required")
	}
	body, err := json.Marshal(map[string]string{"payment_method": paymentMethod})
	if err != nil {
		return Payment{}, fmt.Errorf("psp: ConfirmPayment: %w", err)
	}
	var p Payment
	if err := c.do(ctx, http.MethodPost, "/v1/payments/"+url.PathEscape(id)+"/confirm", nil, idempotencyKey, body, &p); err != nil {
		return Payment{}, fmt.Errorf("psp: ConfirmPayment %s: %w", id, err)
	}
	return p, nil
}

// GetPayment reads one payment by the PSP's id.
func (c *HTTPClient) GetPayment(ctx context.Context, id string) (Payment, error) {
	if id == "" {
		return Payment{}, errors.New("psp: GetPayment: an id is required")
	}
	var p Payment
	if err := c.do(ctx, http.MethodGet, "/v1/payments/"+url.PathEscape(id), nil, "", nil, &p); err != nil {
		return Payment{}, fmt.Errorf("psp: GetPayment %s: %w", id, err)
	}
	if p.ID != id {
		return Payment{}, fmt.Errorf("psp: GetPayment %s: %w: the answer is payment %q", id, ErrUnknownOutcome, p.ID)
	}
	return p, nil
}

// FindByReference looks the payment up by merchant reference through the
// list filter.
func (c *HTTPClient) FindByReference(ctx context.Context, merchantReference string) (Payment, error) {
	if merchantReference == "" {
		return Payment{}, errors.New("psp: FindByReference: a merchant reference is required")
	}
	page, err := c.ListPayments(ctx, ListParams{MerchantReference: merchantReference, Limit: 2})
	if err != nil {
		return Payment{}, err
	}
	var found []Payment
	for _, p := range page.Payments {
		if p.MerchantReference == merchantReference {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return Payment{}, &Error{HTTPStatus: http.StatusNotFound, Code: "not_found", Message: "no payment for merchant reference " + merchantReference}
	case 1:
		return found[0], nil
	}
	return Payment{}, fmt.Errorf("psp: FindByReference %s: %d payments carry this reference", merchantReference, len(found))
}

// ListPayments pages through payments, oldest first.
func (c *HTTPClient) ListPayments(ctx context.Context, p ListParams) (Page, error) {
	if p.Limit < 0 || p.Limit > 100 {
		return Page{}, fmt.Errorf("psp: ListPayments: Limit %d: want 1 to 100 (0 for the PSP's default)", p.Limit)
	}
	q := url.Values{}
	if !p.CreatedAfter.IsZero() {
		q.Set("created_after", p.CreatedAfter.UTC().Format(time.RFC3339Nano))
	}
	if p.MerchantReference != "" {
		q.Set("merchant_reference", p.MerchantReference)
	}
	if p.StartingAfter != "" {
		q.Set("starting_after", p.StartingAfter)
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	var page Page
	if err := c.do(ctx, http.MethodGet, "/v1/payments", q, "", nil, &page); err != nil {
		return Page{}, fmt.Errorf("psp: ListPayments: %w", err)
	}
	if page.Payments == nil {
		page.Payments = []Payment{}
	}
	for i := range page.Payments {
		if err := normalise(&page.Payments[i]); err != nil {
			return Page{}, fmt.Errorf("psp: ListPayments: %w", err)
		}
	}
	return page, nil
}

// pspStatuses maps the PSP's vocabulary onto the package's statuses.
var pspStatuses = map[string]string{
	"requires_payment_method": StatusRequiresAction,
	"requires_confirmation":   StatusRequiresAction,
	"requires_action":         StatusRequiresAction,
	"processing":              StatusProcessing,
	"succeeded":               StatusSucceeded,
	"failed":                  StatusFailed,
}

// normalise maps p's status. A status we do not know means we cannot tell
// what happened: an unknown outcome, not a guess.
func normalise(p *Payment) error {
	s, ok := pspStatuses[p.Status]
	if !ok || p.ID == "" {
		return fmt.Errorf("%w: payment %q has unrecognised status %q", ErrUnknownOutcome, p.ID, p.Status)
	}
	p.Status = s
	return nil
}

// problemBody is the part of an RFC 9457 problem the client reads.
type problemBody struct {
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

// do sends one request and decodes a 2xx JSON answer into out (normalising
// a Payment's status).
func (c *HTTPClient) do(ctx context.Context, method, path string, q url.Values, idemKey string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// path is already escaped (url.PathEscape of ids); the base has no query.
	target := c.base.String() + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "paypipe-psp/1")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("%w: HTTP %d, reading the body: %w", ErrUnknownOutcome, resp.StatusCode, err)
	}
	if len(raw) > maxResponseBytes {
		return fmt.Errorf("%w: HTTP %d with a body over %d bytes", ErrUnknownOutcome, resp.StatusCode, maxResponseBytes)
	}
	switch st := resp.StatusCode; {
	case st >= 200 && st < 300:
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
			return fmt.Errorf("%w: HTTP %d with Content-Type %q", ErrUnknownOutcome, st, resp.Header.Get("Content-Type"))
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%w: HTTP %d with an unreadable body: %w", ErrUnknownOutcome, st, err)
		}
		switch v := out.(type) {
		case *Payment:
			return normalise(v)
		case *Refund:
			if v.ID == "" || (v.Status != RefundPending && v.Status != RefundSucceeded && v.Status != RefundFailed) {
				return fmt.Errorf("%w: refund %q has unrecognised status %q", ErrUnknownOutcome, v.ID, v.Status)
			}
		case *Payout:
			if v.ID == "" || (v.Status != PayoutPending && v.Status != PayoutInTransit && !FinalPayout(v.Status)) {
				return fmt.Errorf("%w: payout %q has unrecognised status %q", ErrUnknownOutcome, v.ID, v.Status)
			}
		}
		return nil
	case st >= 400 && st < 500:
		return apiError(resp, raw)
	default: // 5xx, and 1xx/3xx an API never sends
		code := ""
		var pb problemBody
		if json.Unmarshal(raw, &pb) == nil && pb.Code != "" {
			code = " " + pb.Code
		}
		err := fmt.Errorf("%w: HTTP %d%s", ErrUnknownOutcome, st, code)
		if d := retryAfter(resp.Header.Get("Retry-After"), time.Now()); d > 0 {
			return &unknownOutcome{err: err, after: d}
		}
		return err
	}
}

// apiError turns a 4xx into an *Error.
func apiError(resp *http.Response, raw []byte) *Error {
	e := &Error{HTTPStatus: resp.StatusCode, RetryAfterDelay: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var pb problemBody
	if json.Unmarshal(raw, &pb) == nil {
		e.Code = pb.Code
		e.Message = pb.Detail
		if e.Message == "" {
			e.Message = pb.Title
		}
	}
	if e.Code == "" {
		e.Code = "http_" + strconv.Itoa(resp.StatusCode)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	// A 404 is "not found" whatever the body says, so IsNotFound and a Code
	// check agree (a proxy's HTML 404 included).
	if resp.StatusCode == http.StatusNotFound {
		e.Code = "not_found"
	}
	return e
}

// maxRetryAfter caps a server's Retry-After, so a malformed header cannot
// park a caller for days.
const maxRetryAfter = 24 * time.Hour

// retryAfter reads delta-seconds or an HTTP date; 0 when absent or invalid.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return min(time.Duration(min(n, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

var _ Full = (*HTTPClient)(nil)

// refundBody is the JSON of POST /v1/refunds.
type refundBody struct {
	PaymentID         string `json:"payment_id"`
	AmountMinor       int64  `json:"amount_minor"`
	Currency          string `json:"currency"`
	MerchantReference string `json:"merchant_reference"`
	Reason            string `json:"reason,omitempty"`
}

// CreateRefund refunds part or all of a succeeded payment, under
// req.IdempotencyKey. The PSP refuses (an *Error, 400) a payment that did
// not succeed (payment_unexpected_state), another currency
// (currency_mismatch) and more than is left to refund (amount_too_large).
func (c *HTTPClient) CreateRefund(ctx context.Context, req CreateRefundRequest) (Refund, error) {
	if req.IdempotencyKey == "" {
		return Refund{}, errors.New("psp: CreateRefund: an idempotency key is required")
	}
	body, err := json.Marshal(refundBody{PaymentID: req.PaymentID, AmountMinor: req.AmountMinor, Currency: req.Currency,
		MerchantReference: req.MerchantReference, Reason: req.Reason})
	if err != nil {
		return Refund{}, fmt.Errorf("psp: CreateRefund: %w", err)
	}
	var r Refund
	if err := c.do(ctx, http.MethodPost, "/v1/refunds", nil, req.IdempotencyKey, body, &r); err != nil {
		return Refund{}, fmt.Errorf("psp: CreateRefund %s: %w", req.MerchantReference, err)
	}
	if r.MerchantReference != req.MerchantReference || r.PaymentID != req.PaymentID || r.AmountMinor != req.AmountMinor || r.Currency != req.Currency {
		return Refund{}, fmt.Errorf("psp: CreateRefund %s: %w: the answer (%s %s %d %s) does not match the request",
			req.MerchantReference, ErrUnknownOutcome, r.MerchantReference, r.PaymentID, r.AmountMinor, r.Currency)
	}
	return r, nil
}

// GetRefund reads one refund by the PSP's id.
func (c *HTTPClient) GetRefund(ctx context.Context, id string) (Refund, error) {
	if id == "" {
		return Refund{}, errors.New("psp: GetRefund: an id is required")
	}
	var r Refund
	if err := c.do(ctx, http.MethodGet, "/v1/refunds/"+url.PathEscape(id), nil, "", nil, &r); err != nil {
		return Refund{}, fmt.Errorf("psp: GetRefund %s: %w", id, err)
	}
	if r.ID != id {
		return Refund{}, fmt.Errorf("psp: GetRefund %s: %w: the answer is refund %q", id, ErrUnknownOutcome, r.ID)
	}
	return r, nil
}

// FindRefundByReference returns the refund created for a merchant
// reference, or an *Error with Code "not_found".
func (c *HTTPClient) FindRefundByReference(ctx context.Context, merchantReference string) (Refund, error) {
	if merchantReference == "" {
		return Refund{}, errors.New("psp: FindRefundByReference: a merchant reference is required")
	}
	var page struct {
		Refunds []Refund `json:"refunds"`
	}
	q := url.Values{"merchant_reference": {merchantReference}, "limit": {"2"}}
	if err := c.do(ctx, http.MethodGet, "/v1/refunds", q, "", nil, &page); err != nil {
		return Refund{}, fmt.Errorf("psp: FindRefundByReference %s: %w", merchantReference, err)
	}
	return findOne(page.Refunds, merchantReference, "refund", func(r Refund) string { return r.MerchantReference })
}

// payoutBody is the JSON of POST /v1/payouts.
type payoutBody struct {
	AmountMinor       int64  `json:"amount_minor"`
	Currency          string `json:"currency"`
	MerchantReference string `json:"merchant_reference"`
	Destination       string `json:"destination"`
	Description       string `json:"description,omitempty"`
}

// CreatePayout asks the PSP to pay out, under req.IdempotencyKey. The
// payout comes back pending; its end (paid or failed) arrives by webhook
// (PayoutEvent) and can be read with GetPayout.
func (c *HTTPClient) CreatePayout(ctx context.Context, req CreatePayoutRequest) (Payout, error) {
	if req.IdempotencyKey == "" {
		return Payout{}, errors.New("psp: CreatePayout: an idempotency key is required")
	}
	body, err := json.Marshal(payoutBody{AmountMinor: req.AmountMinor, Currency: req.Currency,
		MerchantReference: req.MerchantReference, Destination: req.Destination, Description: req.Description})
	if err != nil {
		return Payout{}, fmt.Errorf("psp: CreatePayout: %w", err)
	}
	var p Payout
	if err := c.do(ctx, http.MethodPost, "/v1/payouts", nil, req.IdempotencyKey, body, &p); err != nil {
		return Payout{}, fmt.Errorf("psp: CreatePayout %s: %w", req.MerchantReference, err)
	}
	if p.MerchantReference != req.MerchantReference || p.AmountMinor != req.AmountMinor || p.Currency != req.Currency || p.Destination != req.Destination {
		return Payout{}, fmt.Errorf("psp: CreatePayout %s: %w: the answer (%s %d %s to %s) does not match the request",
			req.MerchantReference, ErrUnknownOutcome, p.MerchantReference, p.AmountMinor, p.Currency, p.Destination)
	}
	return p, nil
}

// GetPayout reads one payout by the PSP's id.
func (c *HTTPClient) GetPayout(ctx context.Context, id string) (Payout, error) {
	if id == "" {
		return Payout{}, errors.New("psp: GetPayout: an id is required")
	}
	var p Payout
	if err := c.do(ctx, http.MethodGet, "/v1/payouts/"+url.PathEscape(id), nil, "", nil, &p); err != nil {
		return Payout{}, fmt.Errorf("psp: GetPayout %s: %w", id, err)
	}
	if p.ID != id {
		return Payout{}, fmt.Errorf("psp: GetPayout %s: %w: the answer is payout %q", id, ErrUnknownOutcome, p.ID)
	}
	return p, nil
}

// FindPayoutByReference returns the payout created for a merchant
// reference, or an *Error with Code "not_found".
func (c *HTTPClient) FindPayoutByReference(ctx context.Context, merchantReference string) (Payout, error) {
	if merchantReference == "" {
		return Payout{}, errors.New("psp: FindPayoutByReference: a merchant reference is required")
	}
	var page struct {
		Payouts []Payout `json:"payouts"`
	}
	q := url.Values{"merchant_reference": {merchantReference}, "limit": {"2"}}
	if err := c.do(ctx, http.MethodGet, "/v1/payouts", q, "", nil, &page); err != nil {
		return Payout{}, fmt.Errorf("psp: FindPayoutByReference %s: %w", merchantReference, err)
	}
	return findOne(page.Payouts, merchantReference, "payout", func(p Payout) string { return p.MerchantReference })
}

// findOne returns the one element of xs carrying ref, a not_found *Error
// for none, and an error for several (the PSP broke its own rule).
func findOne[T any](xs []T, ref, what string, refOf func(T) string) (T, error) {
	var found []T
	for _, x := range xs {
		if refOf(x) == ref {
			found = append(found, x)
		}
	}
	var zero T
	switch len(found) {
	case 0:
		return zero, &Error{HTTPStatus: http.StatusNotFound, Code: "not_found", Message: "no " + what + " for merchant reference " + ref}
	case 1:
		return found[0], nil
	}
	return zero, fmt.Errorf("psp: %s %s: %d carry this merchant reference", what, ref, len(found))
}

// SettlementReport downloads the settlement file of date's calendar day
// (its year, month and day, read as a UTC day). The answer's headers must
// come within the client's Timeout; the body is then streamed, and a read
// that makes no progress for Timeout fails (the transfer is cut), so a
// stalled server cannot hold the caller forever. A transfer cut short is a
// read error, never a short file: the caller must see io.EOF after the
// closing balances. The caller closes the body.
func (c *HTTPClient) SettlementReport(ctx context.Context, date time.Time) (io.ReadCloser, error) {
	day := date.Format(SettlementDateLayout)
	ctx, cancel := context.WithCancel(ctx)
	stall := time.AfterFunc(c.timeout, cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/v1/settlements/"+day, nil)
	if err != nil {
		stall.Stop()
		cancel()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Accept", "text/csv")
	req.Header.Set("User-Agent", "paypipe-psp/1")
	resp, err := c.hc.Do(req)
	if err != nil {
		stall.Stop()
		cancel()
		return nil, fmt.Errorf("psp: SettlementReport %s: %w: %w", day, ErrUnknownOutcome, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer func() { stall.Stop(); cancel() }()
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return nil, fmt.Errorf("psp: SettlementReport %s: %w", day, apiError(resp, raw))
		}
		return nil, fmt.Errorf("psp: SettlementReport %s: %w: HTTP %d", day, ErrUnknownOutcome, resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/csv" {
		stall.Stop()
		cancel()
		resp.Body.Close()
		return nil, fmt.Errorf("psp: SettlementReport %s: %w: Content-Type %q", day, ErrUnknownOutcome, resp.Header.Get("Content-Type"))
	}
	stall.Stop()
	return &stallReader{body: resp.Body, stall: stall, cancel: cancel, idle: c.timeout}, nil
}

// stallReader cancels the download when no Read returns for idle.
type stallReader struct {
	body   io.ReadCloser
	stall  *time.Timer
	cancel context.CancelFunc
	idle   time.Duration
}

// Read arms the timer only while it waits on the server, so a caller that
// takes its time between reads is not mistaken for a stalled server.
func (s *stallReader) Read(p []byte) (int, error) {
	s.stall.Reset(s.idle)
	n, err := s.body.Read(p)
	s.stall.Stop()
	return n, err
}

func (s *stallReader) Close() error {
	s.stall.Stop()
	err := s.body.Close()
	s.cancel()
	return err
}
