package pspsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/psp"
)

// TestCreateIdempotencyAndValidation: a key replays its payment, refuses a
// different request, and requests that fail validation or authentication
// store nothing.
func TestCreateIdempotencyAndValidation(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{})
	ctx := context.Background()

	req := hosted("ord-1", 1234, "EUR")
	p, err := s.client.CreatePayment(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != psp.StatusRequiresAction || !strings.HasPrefix(p.RedirectURL, s.url+"/pay/") ||
		p.AmountMinor != 1234 || p.Currency != "EUR" || p.MerchantReference != "ord-1" || p.Card != nil {
		t.Fatalf("hosted payment: %+v", p)
	}
	again, err := s.client.CreatePayment(ctx, req)
	if err != nil || again.ID != p.ID || again.RedirectURL != p.RedirectURL {
		t.Fatalf("replay: %+v, %v; want payment %s", again, err, p.ID)
	}

	// The same request with other whitespace and field order is the same
	// request: replayed, with the header saying so.
	body := fmt.Sprintf(`{ "return_url": %q, "merchant_reference": "ord-1", "currency": "EUR",
		"description": "Order ord-1", "amount_minor": 1234 }`, req.ReturnURL)
	st, hdr, b := s.raw(http.MethodPost, "/v1/payments", "", map[string]string{"Idempotency-Key": req.IdempotencyKey}, body)
	var replayed psp.Payment
	if err := json.Unmarshal(b, &replayed); err != nil || st != http.StatusOK || hdr.Get("Idempotent-Replayed") != "true" || replayed.ID != p.ID {
		t.Fatalf("raw replay: %d %s %s", st, hdr.Get("Idempotent-Replayed"), b)
	}
	if replayed.Status != "requires_payment_method" {
		t.Fatalf("the wire status is the PSP's own word: %q", replayed.Status)
	}

	changed := req
	changed.AmountMinor++
	_, err = s.client.CreatePayment(ctx, changed)
	if pe := pspError(t, err); pe.HTTPStatus != 422 || pe.Code != "idempotency_key_reused" || !pe.Permanent() {
		t.Fatalf("same key, other body: %+v", pe)
	}

	other := req
	other.IdempotencyKey = "another-key"
	_, err = s.client.CreatePayment(ctx, other)
	if pe := pspError(t, err); pe.HTTPStatus != 409 || pe.Code != "duplicate_reference" || pe.Permanent() {
		t.Fatalf("same reference, other key: %+v", pe)
	}

	valid := map[string]any{"amount_minor": 500, "currency": "EUR", "merchant_reference": "ord-2", "return_url": "https://shop.example/r"}
	with := func(k string, v any) string {
		m := map[string]any{}
		for k, v := range valid {
			m[k] = v
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	for _, c := range []struct {
		name, body, param string
	}{
		{"zero amount", with("amount_minor", 0), "amount_minor"},
		{"negative amount", with("amount_minor", -1), "amount_minor"},
		{"fractional amount", with("amount_minor", raw("10.5")), "amount_minor"},
		{"string amount", with("amount_minor", "100"), "amount_minor"},
		{"exponent amount", with("amount_minor", raw("1e3")), "amount_minor"},
		{"2^63", with("amount_minor", raw("9223372036854775808")), "amount_minor"},
		{"above MaxAmount", with("amount_minor", money.MaxAmount+1), "amount_minor"},
		{"lower-case currency", with("currency", "eur"), "currency"},
		{"unknown currency", with("currency", "XXX"), "currency"},
		{"no reference", with("merchant_reference", nil), "merchant_reference"},
		{"long reference", with("merchant_reference", strings.Repeat("r", 256)), "merchant_reference"},
		{"control character", with("merchant_reference", "a\x00b"), "merchant_reference"},
		{"hosted without return_url", with("return_url", nil), "return_url"},
		{"relative return_url", with("return_url", "/back"), "return_url"},
		{"javascript return_url", with("return_url", "javascript:alert(1)"), "return_url"},
		{"confirm without method", with("confirm", true), "payment_method"},
		{"method without confirm", with("payment_method", psp.MethodCardSucceeds), "payment_method"},
		{"unknown field", with("amount", 5), ""},
		{"trailing data", with("currency", "EUR") + `{}`, ""},
	} {
		st, _, b := s.raw(http.MethodPost, "/v1/payments", "", map[string]string{"Idempotency-Key": "k-" + c.name}, c.body)
		var pb struct{ Code, Param string }
		_ = json.Unmarshal(b, &pb)
		if st != http.StatusBadRequest || pb.Code != "invalid_request" || pb.Param != c.param {
			t.Errorf("%s: %d %s; want 400 invalid_request on %q", c.name, st, b, c.param)
		}
	}
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		status int
		code   string
	}{
		{"no key", nil, 400, "idempotency_key_missing"},
		{"key too long", map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, 400, "idempotency_key_invalid"},
		{"not JSON", map[string]string{"Idempotency-Key": "k-text", "Content-Type": "text/plain"}, 415, "unsupported_media_type"},
	} {
		st, hdr, b := s.raw(http.MethodPost, "/v1/payments", "", c.hdr, with("merchant_reference", "ord-3"))
		if st != c.status || !strings.Contains(string(b), `"code":"`+c.code+`"`) || hdr.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s; want %d %s", c.name, st, b, c.status, c.code)
		}
	}
	for _, auth := range []string{"-", "wrong", s.adminKey} {
		st, hdr, _ := s.raw(http.MethodPost, "/v1/payments", auth, map[string]string{"Idempotency-Key": "k-auth"}, with("merchant_reference", "ord-4"))
		if st != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("auth %q: %d", auth, st)
		}
	}
	if st, _, _ := s.raw(http.MethodGet, "/admin/faults", s.apiKey, nil, ""); st != http.StatusUnauthorized {
		t.Errorf("the API key opened /admin: %d", st)
	}
	if n := s.count(`SELECT (SELECT count(*) FROM pspsim.payments) + (SELECT count(*) FROM pspsim.idempotency_keys)`); n != 2 {
		t.Fatalf("%d payment and key rows, want 2: refused requests must store nothing", n)
	}
}

// TestDirectCharges: the test payment methods, the charge log, reads, and
// server-to-server confirmation of a hosted payment.
func TestDirectCharges(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{})
	ctx := context.Background()
	for _, c := range []struct {
		method, status, failure, last4 string
		charges                        int
	}{
		{psp.MethodCardSucceeds, psp.StatusSucceeded, "", "4242", 1},
		{psp.MethodCardDeclined, psp.StatusFailed, "card_declined", "0002", 0},
		{psp.MethodCardInsufficientFunds, psp.StatusFailed, "insufficient_funds", "9995", 0},
		{psp.MethodCardDelayedWebhook, psp.StatusSucceeded, "", "0077", 1},
	} {
		ref := "direct-" + c.method
		p, err := s.client.CreatePayment(ctx, direct(ref, c.method))
		if err != nil {
			t.Fatalf("%s: %v", c.method, err)
		}
		if p.Status != c.status || p.FailureCode != c.failure || p.Card == nil || p.Card.Last4 != c.last4 || p.Card.Brand != "visa" || p.RedirectURL != "" {
			t.Errorf("%s: %+v (card %+v)", c.method, p, p.Card)
		}
		got, err := s.client.GetPayment(ctx, p.ID)
		if err != nil || got.Status != c.status || got.ID != p.ID || !got.Updated.Equal(p.Updated) {
			t.Errorf("%s: get %+v, %v", c.method, got, err)
		}
		found, err := s.client.FindByReference(ctx, ref)
		if err != nil || found.ID != p.ID {
			t.Errorf("%s: find %+v, %v", c.method, found, err)
		}
		ch := s.charges(ref)
		if len(ch) != c.charges {
			t.Fatalf("%s: %d charges, want %d", c.method, len(ch), c.charges)
		}
		if c.charges == 1 && (ch[0].PaymentID != p.ID || ch[0].AmountMinor != 2599 || ch[0].Currency != "EUR" ||
			ch[0].IdempotencyKey != "key-"+ref || ch[0].Card.Last4 != c.last4) {
			t.Errorf("%s: charge %+v", c.method, ch[0])
		}
	}

	if _, err := s.client.GetPayment(ctx, "pay_nosuch"); !psp.IsNotFound(err) || pspError(t, err).Code != "not_found" {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := s.client.FindByReference(ctx, "never-created"); !psp.IsNotFound(err) {
		t.Errorf("unknown reference: %v", err)
	}

	h, err := s.client.CreatePayment(ctx, hosted("confirm-me", 700, "USD"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.client.ConfirmPayment(ctx, h.ID, psp.MethodCardSucceeds, "confirm-key-1")
	if err != nil || p.ID != h.ID || p.Status != psp.StatusSucceeded || p.RedirectURL != "" {
		t.Fatalf("confirm: %+v, %v", p, err)
	}
	if again, err := s.client.ConfirmPayment(ctx, h.ID, psp.MethodCardSucceeds, "confirm-key-1"); err != nil || again.ID != h.ID || again.Status != psp.StatusSucceeded {
		t.Fatalf("confirm replay: %+v, %v", again, err)
	}
	if _, err := s.client.ConfirmPayment(ctx, h.ID, psp.MethodCardDeclined, "confirm-key-1"); pspError(t, err).Code != "idempotency_key_reused" {
		t.Fatalf("confirm key reused with another method: %v", err)
	}
	_, err = s.client.ConfirmPayment(ctx, h.ID, psp.MethodCardSucceeds, "confirm-key-2")
	if pe := pspError(t, err); pe.Code != "payment_unexpected_state" || !pe.Permanent() {
		t.Fatalf("second confirm with a new key: %+v", pe)
	}
	if _, err := s.client.ConfirmPayment(ctx, "pay_nosuch", psp.MethodCardSucceeds, "confirm-key-3"); !psp.IsNotFound(err) {
		t.Fatalf("confirm unknown payment: %v", err)
	}
	if ch := s.charges("confirm-me"); len(ch) != 1 || ch[0].IdempotencyKey != "confirm-key-1" {
		t.Fatalf("charges after confirms: %+v", ch)
	}
}

// TestListPayments pages oldest first by (created, id) and filters.
func TestListPayments(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{})
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		p, err := s.client.CreatePayment(ctx, hosted(fmt.Sprintf("list-%d", i), int64(100+i), "GBP"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	var got []string
	var hasMore []bool
	params := psp.ListParams{Limit: 2}
	for range 5 {
		page, err := s.client.ListPayments(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Payments {
			got = append(got, p.ID)
			if p.Status != psp.StatusRequiresAction {
				t.Errorf("listed status %q", p.Status)
			}
		}
		hasMore = append(hasMore, page.HasMore)
		if !page.HasMore {
			break
		}
		params.StartingAfter = page.Payments[len(page.Payments)-1].ID
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) || fmt.Sprint(hasMore) != "[true true false]" {
		t.Fatalf("pages %v (has_more %v), want %v", got, hasMore, ids)
	}
	second, err := s.client.GetPayment(ctx, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.client.ListPayments(ctx, psp.ListParams{CreatedAfter: second.Created, Limit: 100})
	if err != nil || len(page.Payments) != 3 || page.Payments[0].ID != ids[2] || page.HasMore {
		t.Fatalf("created_after: %+v, %v", page, err)
	}
	page, err = s.client.ListPayments(ctx, psp.ListParams{MerchantReference: "list-3"})
	if err != nil || len(page.Payments) != 1 || page.Payments[0].ID != ids[3] {
		t.Fatalf("by reference: %+v, %v", page, err)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "nosuch=1", "created_after=yesterday", "starting_after=pay_nosuch", "limit=1&limit=2"} {
		if st, _, b := s.raw(http.MethodGet, "/v1/payments?"+q, "", nil, ""); st != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, st, b)
		}
	}
	if _, err := s.client.ListPayments(ctx, psp.ListParams{Limit: 101}); err == nil {
		t.Error("client accepted Limit 101")
	}
}

// TestConcurrentCreates: 50 concurrent creates with one key make one
// payment and one charge; 20 with one reference and different keys make one
// payment and 19 duplicate_reference refusals.
func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{})
	ctx := context.Background()
	const n = 50
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p, err := s.client.CreatePayment(ctx, direct("same-key", psp.MethodCardSucceeds))
			ids[i], errs[i] = p.ID, err
			if err == nil && p.Status != psp.StatusSucceeded {
				errs[i] = fmt.Errorf("status %s", p.Status)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("request %d: %s, %v (first: %s)", i, ids[i], errs[i], ids[0])
		}
	}
	if ch := s.charges("same-key"); len(ch) != 1 || ch[0].PaymentID != ids[0] {
		t.Fatalf("charges: %+v", ch)
	}
	if c := s.count(`SELECT count(*) FROM pspsim.payments`); c != 1 {
		t.Fatalf("%d payments", c)
	}

	const m = 20
	errs = make([]error, m)
	for i := range m {
		wg.Go(func() {
			req := direct("same-ref", psp.MethodCardSucceeds)
			req.IdempotencyKey = fmt.Sprintf("key-%d", i)
			_, errs[i] = s.client.CreatePayment(ctx, req)
		})
	}
	wg.Wait()
	ok, dup := 0, 0
	for _, err := range errs {
		var pe *psp.Error
		switch {
		case err == nil:
			ok++
		case errors.As(err, &pe) && pe.Code == "duplicate_reference":
			dup++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 1 || dup != m-1 || len(s.charges("same-ref")) != 1 {
		t.Fatalf("%d created, %d duplicate_reference, %d charges; want 1, %d, 1", ok, dup, len(s.charges("same-ref")), m-1)
	}
}

func TestHealthAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{noRun: true})
	if st, _, b := s.raw(http.MethodGet, "/healthz", "-", nil, ""); st != http.StatusOK || !strings.Contains(string(b), `"ok"`) {
		t.Fatalf("healthz: %d %s", st, b)
	}
	if st, _, _ := s.raw(http.MethodGet, "/readyz", "-", nil, ""); st != http.StatusOK {
		t.Fatalf("readyz: %d", st)
	}
	if st, _, b := s.raw(http.MethodGet, "/v1/nosuch", "", nil, ""); st != http.StatusNotFound || !strings.Contains(string(b), `"not_found"`) {
		t.Fatalf("unknown route: %d %s", st, b)
	}
	if st, _, _ := s.raw(http.MethodGet, "/v1/nosuch", "-", nil, ""); st != http.StatusUnauthorized {
		t.Fatalf("unknown route without auth must not say whether it exists: %d", st)
	}
}
