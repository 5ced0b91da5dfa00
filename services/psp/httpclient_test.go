package psp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
)

// These tests pin the client's mapping of HTTP onto the package's three
// outcomes against scripted answers. services/pspsim's tests run the same
// client against the real simulator.

func fakePSP(t *testing.T, h http.HandlerFunc) (*psp.HTTPClient, *httptest.Server) {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	c, err := psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: ts.URL + "/", APIKey: "sk_test_1", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, ts
}

func paymentJSON(status, ref string) string {
	return `{"id":"pay_1","status":"` + status + `","amount_minor":1234,"currency":"EUR","merchant_reference":"` + ref +
		`","created":"2026-01-02T03:04:05.123456Z","updated":"2026-01-02T03:04:05.123456Z"}`
}

func reply(status int, contentType, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

var createReq = psp.CreatePaymentRequest{IdempotencyKey: "idem-1", AmountMinor: 1234, Currency: "EUR",
	MerchantReference: "ref-1", Description: "d", ReturnURL: "https://shop.example/r"}

func TestHTTPClientSendsTheRequest(t *testing.T) {
	t.Parallel()
	var got struct {
		method, path, auth, key, ctype string
		body                           map[string]any
	}
	c, _ := fakePSP(t, func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.auth = r.Method, r.URL.Path, r.Header.Get("Authorization")
		got.key, got.ctype = r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type")
		if err := json.NewDecoder(r.Body).Decode(&got.body); err != nil {
			t.Error(err)
		}
		reply(201, "application/json", paymentJSON("requires_payment_method", "ref-1"))(w, r)
	})
	p, err := c.CreatePayment(context.Background(), createReq)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"amount_minor": 1234.0, "currency": "EUR", "merchant_reference": "ref-1", "description": "d", "return_url": "https://shop.example/r"}
	if got.method != "POST" || got.path != "/v1/payments" || got.auth != "Bearer sk_test_1" || got.key != "idem-1" ||
		got.ctype != "application/json" || len(got.body) != len(want) {
		t.Fatalf("request %+v", got)
	}
	for k, v := range want {
		if got.body[k] != v {
			t.Errorf("body %s = %v, want %v", k, got.body[k], v)
		}
	}
	if p.Status != psp.StatusRequiresAction || p.ID != "pay_1" || p.Created.Nanosecond() != 123456000 {
		t.Fatalf("payment %+v", p)
	}

	// Ids are path-escaped exactly once.
	var escaped atomic.Value
	c3, _ := fakePSP(t, func(w http.ResponseWriter, r *http.Request) {
		escaped.Store(r.URL.EscapedPath())
		reply(200, "application/json", `{"id":"pay/1?x","status":"succeeded","amount_minor":1,"currency":"EUR","merchant_reference":"r"}`)(w, r)
	})
	if p, err := c3.GetPayment(context.Background(), "pay/1?x"); err != nil || p.ID != "pay/1?x" || escaped.Load() != "/v1/payments/pay%2F1%3Fx" {
		t.Fatalf("escaping: %+v, %v, path %v", p, err, escaped.Load())
	}

	var calls atomic.Int32
	c2, _ := fakePSP(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	noKey := createReq
	noKey.IdempotencyKey = ""
	if _, err := c2.CreatePayment(context.Background(), noKey); err == nil || calls.Load() != 0 {
		t.Fatalf("a create without an idempotency key: %v after %d calls", err, calls.Load())
	}
}

func TestHTTPClientMapsStatuses(t *testing.T) {
	t.Parallel()
	for wire, want := range map[string]string{
		"requires_payment_method": psp.StatusRequiresAction,
		"requires_action":         psp.StatusRequiresAction,
		"processing":              psp.StatusProcessing,
		"succeeded":               psp.StatusSucceeded,
		"failed":                  psp.StatusFailed,
	} {
		c, _ := fakePSP(t, reply(200, "application/json", paymentJSON(wire, "ref-1")))
		p, err := c.GetPayment(context.Background(), "pay_1")
		if err != nil || p.Status != want {
			t.Errorf("%s: %q, %v; want %q", wire, p.Status, err, want)
		}
	}
	c, _ := fakePSP(t, reply(200, "application/json", paymentJSON("canceled", "ref-1")))
	if _, err := c.GetPayment(context.Background(), "pay_1"); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Errorf("an unknown status must be an unknown outcome: %v", err)
	}
}

func TestHTTPClientMapsErrors(t *testing.T) {
	t.Parallel()
	problem := func(code string) string {
		return `{"type":"x","title":"t","status":0,"code":"` + code + `","detail":"why"}`
	}
	const pj = "application/problem+json"
	for _, c := range []struct {
		name       string
		h          http.HandlerFunc
		unknown    bool
		status     int
		code       string
		permanent  bool
		retryAfter time.Duration
	}{
		{"500", reply(500, pj, problem("internal_error")), true, 0, "", false, 0},
		{"503 with Retry-After", reply(503, "text/plain", "busy", "Retry-After", "3"), true, 0, "", false, 3 * time.Second},
		{"502 HTML", reply(502, "text/html", "<h1>Bad gateway</h1>"), true, 0, "", false, 0},
		{"redirect", reply(302, "", "", "Location", "https://elsewhere.example/"), true, 0, "", false, 0},
		{"200 not JSON", reply(200, "application/json", "{"), true, 0, "", false, 0},
		{"200 HTML", reply(200, "text/html", paymentJSON("succeeded", "ref-1")), true, 0, "", false, 0},
		{"200 over 1 MiB", reply(200, "application/json", `{"id":"pay_1","pad":"`+strings.Repeat("x", 1<<20)+`"}`), true, 0, "", false, 0},
		{"200 for another reference", reply(200, "application/json", paymentJSON("succeeded", "ref-2")), true, 0, "", false, 0},
		{"404 HTML", reply(404, "text/html", "<h1>nope</h1>"), false, 404, "not_found", true, 0},
		{"422 reused key", reply(422, pj, problem("idempotency_key_reused")), false, 422, "idempotency_key_reused", true, 0},
		{"409 duplicate", reply(409, pj, problem("duplicate_reference")), false, 409, "duplicate_reference", false, 0},
		{"429 seconds", reply(429, pj, problem("rate_limited"), "Retry-After", "7"), false, 429, "rate_limited", false, 7 * time.Second},
		{"429 date", reply(429, pj, problem("rate_limited"), "Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat)), false, 429, "rate_limited", false, 89 * time.Second},
		{"400 plain text", reply(400, "text/plain", "bad"), false, 400, "http_400", true, 0},
	} {
		cl, _ := fakePSP(t, c.h)
		_, err := cl.CreatePayment(context.Background(), createReq)
		// What retry.Policy sees: the classification and the Retry-After.
		if want := c.permanent; (retry.Classify(err) == retry.ClassPermanent) != want {
			t.Errorf("%s: retry.Classify = %s, want permanent %v", c.name, retry.Classify(err), want)
		}
		if d, _ := retry.RetryAfter(err); d > c.retryAfter+time.Second || d < c.retryAfter {
			t.Errorf("%s: retry.RetryAfter = %s, want %s", c.name, d, c.retryAfter)
		}
		if c.unknown {
			if !errors.Is(err, psp.ErrUnknownOutcome) || psp.IsPermanent(err) {
				t.Errorf("%s: %v, want an unknown outcome", c.name, err)
			}
			continue
		}
		var pe *psp.Error
		if !errors.As(err, &pe) || errors.Is(err, psp.ErrUnknownOutcome) {
			t.Errorf("%s: %v, want a *psp.Error", c.name, err)
			continue
		}
		if pe.HTTPStatus != c.status || pe.Code != c.code || pe.Permanent() != c.permanent ||
			pe.RetryAfterDelay > c.retryAfter+time.Second || pe.RetryAfterDelay < c.retryAfter {
			t.Errorf("%s: %+v", c.name, pe)
		}
		if c.status == 404 && !psp.IsNotFound(err) {
			t.Errorf("%s: IsNotFound false", c.name)
		}
	}
}

func TestHTTPClientTimeoutsAndTransportErrors(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(release) })
	c, err := psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: ts.URL, APIKey: "k", Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.CreatePayment(context.Background(), createReq)
	if !errors.Is(err, psp.ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the call took %s with a 100ms timeout", d)
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	c, err = psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: closed.URL, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetPayment(context.Background(), "pay_1"); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("connection refused: %v", err)
	}
}

func TestHTTPClientListAndFind(t *testing.T) {
	t.Parallel()
	var query atomic.Value
	pages := map[string]string{
		"none": `{"payments":[],"has_more":false}`,
		"one":  `{"payments":[` + paymentJSON("succeeded", "one") + `],"has_more":false}`,
		"two":  `{"payments":[` + paymentJSON("succeeded", "two") + `,` + paymentJSON("failed", "two") + `],"has_more":false}`,
	}
	c, _ := fakePSP(t, func(w http.ResponseWriter, r *http.Request) {
		query.Store(r.URL.RawQuery)
		body, ok := pages[r.URL.Query().Get("merchant_reference")]
		if !ok {
			body = `{"payments":[` + paymentJSON("processing", "x") + `],"has_more":true}`
		}
		reply(200, "application/json", body)(w, r)
	})
	ctx := context.Background()
	if _, err := c.FindByReference(ctx, "none"); !psp.IsNotFound(err) {
		t.Errorf("none: %v", err)
	}
	if p, err := c.FindByReference(ctx, "one"); err != nil || p.MerchantReference != "one" || p.Status != psp.StatusSucceeded {
		t.Errorf("one: %+v, %v", p, err)
	}
	if q := query.Load(); q != "limit=2&merchant_reference=one" {
		t.Errorf("find query %q", q)
	}
	if _, err := c.FindByReference(ctx, "two"); err == nil || psp.IsNotFound(err) {
		t.Errorf("two payments for one reference: %v", err)
	}
	after := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("x", 3600))
	page, err := c.ListPayments(ctx, psp.ListParams{CreatedAfter: after, StartingAfter: "pay_9", Limit: 50})
	if err != nil || !page.HasMore || len(page.Payments) != 1 || page.Payments[0].Status != psp.StatusProcessing {
		t.Fatalf("list: %+v, %v", page, err)
	}
	if q := query.Load(); q != "created_after=2026-01-02T02%3A04%3A05.000006Z&limit=50&starting_after=pay_9" {
		t.Errorf("list query %q", q)
	}
}

func TestNewHTTPClientValidates(t *testing.T) {
	t.Parallel()
	for _, cfg := range []psp.HTTPClientConfig{
		{BaseURL: "", APIKey: "k"},
		{BaseURL: "127.0.0.1:8090", APIKey: "k"},
		{BaseURL: "ftp://psp.example", APIKey: "k"},
		{BaseURL: "http://psp.example?x=1", APIKey: "k"},
		{BaseURL: "http://psp.example"},
		{BaseURL: "http://psp.example", APIKey: "k", Timeout: -time.Second},
	} {
		if _, err := psp.NewHTTPClient(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestHTTPClientSettlementReport: the report is streamed; a server that
// stops sending mid-file is cut after Timeout without progress (a read
// error, never a short file); errors map as for every call.
func TestHTTPClientSettlementReport(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var path atomic.Value
	c, _ := fakePSP(t, func(w http.ResponseWriter, r *http.Request) {
		path.Store(r.URL.Path)
		switch r.URL.Path {
		case "/v1/settlements/2026-06-01":
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, psp.SettlementHeader+"\n")
			w.(http.Flusher).Flush()
			<-release // the server stalls mid-file
		case "/v1/settlements/2026-06-02":
			reply(404, "application/problem+json", `{"code":"not_found","detail":"no file"}`)(w, r)
		case "/v1/settlements/2026-06-03":
			reply(200, "text/html", `<html>`)(w, r)
		default:
			reply(503, "application/problem+json", `{"code":"unavailable"}`, "Retry-After", "3")(w, r)
		}
	})
	t.Cleanup(func() { close(release) })

	body, err := c.SettlementReport(context.Background(), time.Date(2026, 6, 1, 23, 0, 0, 0, time.FixedZone("X", -5*3600)))
	if err != nil {
		t.Fatal(err)
	}
	if path.Load() != "/v1/settlements/2026-06-01" {
		t.Fatalf("asked for %v: the date's own calendar day is the day", path.Load())
	}
	start := time.Now()
	b, err := io.ReadAll(body)
	_ = body.Close()
	if err == nil || string(b) != psp.SettlementHeader+"\n" || time.Since(start) > 5*time.Second {
		t.Fatalf("stalled transfer: %q, %v after %s; want the header, then an error", b, err, time.Since(start))
	}
	if _, err := c.SettlementReport(context.Background(), time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)); !psp.IsNotFound(err) || !psp.IsPermanent(err) {
		t.Fatalf("404: %v", err)
	}
	if _, err := c.SettlementReport(context.Background(), time.Date(2026, 6, 3, 0, 0, 0, 0, time.UTC)); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("HTML answer: %v", err)
	}
	if _, err := c.SettlementReport(context.Background(), time.Date(2026, 6, 4, 0, 0, 0, 0, time.UTC)); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("503: %v", err)
	}
}

// TestHTTPClientPayoutStatus: a payout or refund in a status the client
// does not know is an unknown outcome, not a guess.
func TestHTTPClientPayoutStatus(t *testing.T) {
	t.Parallel()
	c, _ := fakePSP(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/payouts/") {
			reply(200, "application/json", `{"id":"po_1","status":"teleported","amount_minor":1,"currency":"EUR"}`)(w, r)
			return
		}
		reply(200, "application/json", `{"id":"re_1","status":"succeeded","amount_minor":5,"currency":"EUR","payment_id":"pay_1","merchant_reference":"other"}`)(w, r)
	})
	if _, err := c.GetPayout(context.Background(), "po_1"); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("unknown payout status: %v", err)
	}
	_, err := c.CreateRefund(context.Background(), psp.CreateRefundRequest{IdempotencyKey: "k", PaymentID: "pay_1",
		AmountMinor: 5, Currency: "EUR", MerchantReference: "mine"})
	if !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("a refund answer for another reference: %v", err)
	}
}
