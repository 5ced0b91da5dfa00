package pspsim_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/psp"
)

// postCard submits the hosted form and returns the status, Location and body.
func postCard(t *testing.T, pageURL, number, exp, cvc string) (int, string, string) {
	t.Helper()
	form := url.Values{"cardnumber": {number}, "exp": {exp}, "cvc": {cvc}, "name": {"Ada Lovelace"}}
	resp, err := noRedirect.PostForm(pageURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func getPage(t *testing.T, pageURL string) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirect.Get(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func nextYear() string { return fmt.Sprintf("12/%02d", (time.Now().Year()+1)%100) }

// TestHostedPage: the page renders the amount in the currency's exponent,
// each test card ends in a redirect with the hint and the right charge log,
// a paid page never charges again, and no card number is stored or logged.
func TestHostedPage(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{})
	ctx := context.Background()

	for _, c := range []struct {
		amount   int64
		currency string
		want     string
	}{{1234, "EUR", "EUR 12.34"}, {1200, "JPY", "JPY 1200"}, {1234, "KWD", "KWD 1.234"}} {
		p, err := s.client.CreatePayment(ctx, hosted("show-"+c.currency, c.amount, c.currency))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := getPage(t, p.RedirectURL)
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || !strings.Contains(body, c.want) || !strings.Contains(body, "show-"+c.currency) {
			t.Errorf("%s page: %d, want %q in\n%s", c.currency, resp.StatusCode, c.want, body)
		}
		for _, attr := range []string{`autocomplete="cc-number"`, `autocomplete="cc-exp"`, `autocomplete="cc-csc"`, `autocomplete="cc-name"`, `method="post"`} {
			if !strings.Contains(body, attr) {
				t.Errorf("page lacks %s", attr)
			}
		}
		if strings.Contains(body, "<script") || !strings.Contains(csp, "default-src 'none'") ||
			!strings.Contains(csp, "form-action 'self' https://shop.example") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("page headers: CSP %q, %v", csp, resp.Header)
		}
	}

	pay := func(ref, number string) (psp.Payment, int, string) {
		t.Helper()
		p, err := s.client.CreatePayment(ctx, hosted(ref, 5000, "EUR"))
		if err != nil {
			t.Fatal(err)
		}
		st, loc, _ := postCard(t, p.RedirectURL, number, nextYear(), "123")
		return p, st, loc
	}
	for _, c := range []struct {
		number, status, failure, brand, last4 string
		charges                               int
	}{
		{"4242 4242 4242 4242", psp.StatusSucceeded, "", "visa", "4242", 1},
		{"4000000000000002", psp.StatusFailed, "card_declined", "visa", "0002", 0},
		{"4000-0000-0000-9995", psp.StatusFailed, "insufficient_funds", "visa", "9995", 0},
		{"4000000000000077", psp.StatusSucceeded, "", "visa", "0077", 1},
		{"5555555555554444", psp.StatusSucceeded, "", "mastercard", "4444", 1},
	} {
		ref := "card-" + c.last4
		p, st, loc := pay(ref, c.number)
		hint := "failed"
		if c.status == psp.StatusSucceeded {
			hint = "succeeded"
		}
		want := "https://shop.example/return?cart=7&checkout=" + ref + "&status=" + hint
		if st != http.StatusSeeOther || loc != want {
			t.Errorf("%s: %d → %q, want 303 → %q", c.number, st, loc, want)
		}
		got, err := s.client.GetPayment(ctx, p.ID)
		if err != nil || got.Status != c.status || got.FailureCode != c.failure || got.Card == nil ||
			got.Card.Brand != c.brand || got.Card.Last4 != c.last4 || got.RedirectURL != "" {
			t.Errorf("%s: payment %+v, %v", c.number, got, err)
		}
		if ch := s.charges(ref); len(ch) != c.charges || (c.charges == 1 && (ch[0].PaymentID != p.ID || ch[0].IdempotencyKey != "key-"+ref)) {
			t.Errorf("%s: charges %+v", c.number, ch)
		}
	}
	// 4000000000000077's final webhook waits for DelayedWebhook (1h here).
	delayed, err := s.client.FindByReference(ctx, "card-0077")
	if err != nil {
		t.Fatal(err)
	}
	s.awaitWebhooksSettledExcept(delayed.ID)

	// Refused card details: the form comes back with a message, without
	// what was typed in the number or CVC, and nothing is charged.
	p, err := s.client.CreatePayment(ctx, hosted("refused", 5000, "EUR"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ number, exp, cvc, want string }{
		{"4242424242424241", nextYear(), "123", "card number is not valid"},
		{"4242", nextYear(), "123", "card number is not valid"},
		{"4242424242424242", "01/20", "123", "expiry date"},
		{"4242424242424242", "13/30", "123", "expiry date"},
		{"4242424242424242", nextYear(), "12", "security code"},
		{"4242424242424242", nextYear(), "12a", "security code"},
	} {
		st, _, body := postCard(t, p.RedirectURL, c.number, c.exp, c.cvc)
		if st != http.StatusUnprocessableEntity || !strings.Contains(body, c.want) ||
			(len(c.number) >= 12 && strings.Contains(body, c.number)) || strings.Contains(body, `value="`+c.cvc+`"`) {
			t.Errorf("%s %s %s: %d, want 422 saying %q without echoing the card", c.number, c.exp, c.cvc, st, c.want)
		}
	}
	if got, _ := s.client.GetPayment(ctx, p.ID); got.Status != psp.StatusRequiresAction || len(s.charges("refused")) != 0 {
		t.Fatalf("refused card details changed the payment: %+v", got)
	}

	// Five buyers' tabs submit at once, then one more later: one charge.
	var wg sync.WaitGroup
	statuses := make([]int, 5)
	for i := range statuses {
		wg.Go(func() { statuses[i], _, _ = postCard(t, p.RedirectURL, "4242424242424242", nextYear(), "123") })
	}
	wg.Wait()
	st, _, body := postCard(t, p.RedirectURL, "4242424242424242", nextYear(), "123")
	redirects := 0
	for _, s := range statuses {
		if s == http.StatusSeeOther {
			redirects++
		} else if s != http.StatusConflict {
			t.Errorf("concurrent POST: %d", s)
		}
	}
	if redirects != 1 || st != http.StatusConflict || !strings.Contains(body, "Already paid") {
		t.Fatalf("%d redirects of 5 concurrent POSTs, then %d: %s", redirects, st, body)
	}
	if ch := s.charges("refused"); len(ch) != 1 {
		t.Fatalf("charges after six POSTs: %+v", ch)
	}
	if resp, body := getPage(t, p.RedirectURL); resp.StatusCode != 200 || !strings.Contains(body, "Already paid") || strings.Contains(body, "<form") {
		t.Fatalf("paid page: %d %s", resp.StatusCode, body)
	}
	for _, bad := range []string{"/pay/nosuchtoken", "/pay/" + strings.Repeat("a", 26)} {
		if resp, _ := getPage(t, s.url+bad); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d", bad, resp.StatusCode)
		}
	}

	// No full card number anywhere in the database or the logs.
	pans := regexp.MustCompile(`4242424242424242|4000000000000002|4000000000009995|4000000000000077|5555555555554444|4242424242424241`)
	rows, err := s.pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'pspsim'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if rows.Err() != nil || len(tables) < 5 {
		t.Fatalf("tables %v, %v", tables, rows.Err())
	}
	for _, table := range tables {
		// A row's text form covers every column, bytea as hex: decode that too.
		n := s.count(`SELECT count(*) FROM pspsim.`+table+` x WHERE x::text ~ $1 OR encode(convert_to(x::text, 'UTF8'), 'escape') ~ $1`, pans.String())
		if n != 0 {
			t.Errorf("table pspsim.%s: %d rows hold a card number", table, n)
		}
	}
	if m := pans.FindString(s.logs.String()); m != "" {
		t.Errorf("a card number is in the logs: %s", m)
	}
	if !strings.Contains(s.logs.String(), `"card_last4":"4242"`) {
		t.Error("the logs are not being captured")
	}
}

// awaitWebhooksSettledExcept waits until only the events of one payment are
// still pending.
func (s *sim) awaitWebhooksSettledExcept(paymentID string) {
	s.t.Helper()
	testenv.Eventually(s.t, 15*time.Second, "other payments' webhooks delivered", func() (bool, error) {
		return s.count(`SELECT count(*) FROM pspsim.webhook_events WHERE state = 'pending' AND payment_id <> $1`, paymentID) == 0, nil
	})
	evs := s.webhookEvents("payment_id=" + paymentID)
	if len(evs) != 2 || evs[0].State != "delivered" || evs[1].State != "pending" || evs[1].Attempts != 0 || evs[1].Type != psp.EventPaymentSucceeded {
		s.t.Fatalf("delayed card's events: %+v", evs)
	}
}
