package shop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/services/payment"
)

// The shop reaches paypipe only through its public HTTP API, with its own
// API key, as any merchant's backend would: it never reads payment's tables
// while serving (Setup, which runs once at start, is the exception).

// Bounds of the API client.
const (
	// maxResponseBytes bounds what the client reads of one API response.
	maxResponseBytes = 1 << 20
	// maxCreateAttempts bounds the retries of one checkout creation; the
	// request's deadline bounds them too.
	maxCreateAttempts = 8
	// maxRetryAfter caps a server's Retry-After.
	maxRetryAfter = 2 * time.Second
	// listPageSize and maxListPages bound findByReturnURL.
	listPageSize = 100
	maxListPages = 3
)

// errNotFound: the API answered 404 (no such checkout, or another merchant's).
var errNotFound = errors.New("shop: not found")

// apiError is a non-2xx answer of paypipe's API.
type apiError struct {
	Status     int
	Problem    payment.Problem
	RetryAfter time.Duration
}

func (e *apiError) Error() string {
	return fmt.Sprintf("paypipe API: %d %s: %s", e.Status, e.Problem.Code, e.Problem.Detail)
}

func (e *apiError) Is(target error) bool {
	return target == errNotFound && e.Status == http.StatusNotFound
}

// retryable: the request may be sent again with the same Idempotency-Key
// (429: the first request with the key is still in flight; 5xx: nothing was
// committed, see payment's idempotency.go).
func (e *apiError) retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

type apiClient struct {
	base string // no trailing slash
	key  string
	hc   *http.Client
}

// checkoutRequest is POST /v1/checkouts' body. Its encoding must be the same
// bytes for the same basket and nonce: the API fingerprints the body, and a
// retry or a double submit must replay, not collide.
type checkoutRequest struct {
	BuyerID   string         `json:"buyer_id"`
	Currency  string         `json:"currency"`
	Mode      string         `json:"mode"`
	ReturnURL string         `json:"return_url"`
	Orders    []orderRequest `json:"orders"`
}

type orderRequest struct {
	SellerID    uuid.UUID `json:"seller_id"`
	AmountMinor int64     `json:"amount_minor"`
}

func (c *apiClient) do(ctx context.Context, method, path, idemKey string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("paypipe API: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idemKey)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("paypipe API: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("paypipe API: %s %s: read: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		e := &apiError{Status: res.StatusCode}
		_ = json.Unmarshal(b, &e.Problem) // a body that is no problem document leaves it empty
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s >= 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		return e
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("paypipe API: %s %s: decode: %w", method, path, err)
	}
	return nil
}

// createCheckout creates a checkout, retrying what may be retried with the
// same Idempotency-Key (a lost answer, a 429 while a double submit's twin is
// in flight, a 503) until ctx ends or maxCreateAttempts. Whatever the number
// of attempts and submits, the API makes one checkout of a key.
func (c *apiClient) createCheckout(ctx context.Context, idemKey string, req checkoutRequest) (payment.Checkout, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return payment.Checkout{}, fmt.Errorf("encode checkout: %w", err)
	}
	var last error
	for attempt := 1; attempt <= maxCreateAttempts; attempt++ {
		var co payment.Checkout
		err := c.do(ctx, http.MethodPost, "/v1/checkouts", idemKey, body, &co)
		if err == nil {
			return co, nil
		}
		last = err
		wait := time.Duration(attempt) * 100 * time.Millisecond
		var ae *apiError
		if errors.As(err, &ae) {
			if !ae.retryable() {
				return payment.Checkout{}, err
			}
			if ae.RetryAfter > 0 {
				wait = min(ae.RetryAfter, maxRetryAfter)
			}
		}
		if err := sleep(ctx, wait); err != nil {
			return payment.Checkout{}, fmt.Errorf("%w (after: %w)", err, last)
		}
	}
	return payment.Checkout{}, fmt.Errorf("create checkout: %d attempts: %w", maxCreateAttempts, last)
}

func (c *apiClient) getCheckout(ctx context.Context, id uuid.UUID) (payment.Checkout, error) {
	var co payment.Checkout
	err := c.do(ctx, http.MethodGet, "/v1/checkouts/"+id.String(), "", nil, &co)
	return co, err
}

// findByReturnURL looks for the checkout created with returnURL among the
// merchant's newest maxListPages × listPageSize checkouts. The shop keeps
// no database: this is how an order page served by another process, or
// after a restart, finds its checkout.
func (c *apiClient) findByReturnURL(ctx context.Context, returnURL string) (uuid.UUID, error) {
	after := ""
	for range maxListPages {
		q := url.Values{"limit": {strconv.Itoa(listPageSize)}}
		if after != "" {
			q.Set("starting_after", after)
		}
		var page payment.CheckoutList
		if err := c.do(ctx, http.MethodGet, "/v1/checkouts?"+q.Encode(), "", nil, &page); err != nil {
			return uuid.Nil, err
		}
		for _, co := range page.Data {
			if co.ReturnURL == returnURL {
				return co.ID, nil
			}
		}
		if !page.HasMore || len(page.Data) == 0 {
			break
		}
		after = page.Data[len(page.Data)-1].ID.String()
	}
	return uuid.Nil, errNotFound
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
