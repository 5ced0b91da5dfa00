package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/config"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/internal/verify"
	"github.com/paypipe/paypipe/services/payment"
)

// startApp runs every service in-process on the embedded defaults (NATS and
// the PSP simulator), on a fresh database.
func startApp(t *testing.T) *app {
	t.Helper()
	return startAppWith(t, appOptions{})
}

// startAppWith is startApp with options (cfg, services and log are filled in).
func startAppWith(t *testing.T, o appOptions) *app {
	t.Helper()
	vars := freshEnv(t)
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		level := slog.LevelWarn
		if os.Getenv("PAYPIPE_TEST_LOG") == "debug" {
			level = slog.LevelDebug
		}
		log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	o.cfg, o.services, o.log = cfg, registry(), log
	a, err := newApp(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return a
}

// apiClient talks to the payment API as a merchant.
type apiClient struct {
	t    *testing.T
	base string
	key  string
}

func (c apiClient) do(method, path string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", uuid.NewString())
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	if res.StatusCode >= 300 {
		c.t.Logf("%s %s → %d %s", method, path, res.StatusCode, b)
	}
	return res.StatusCode
}

// The whole pay-in flow: direct checkouts (a success split over two sellers
// and a decline) and a hosted checkout paid by submitting the PSP's card
// form; every payment ends final, the ledger and wallets agree, each buyer
// was charged at most once, and verify finds nothing wrong.
func TestPayInEndToEnd(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	ctx := context.Background()
	api, sellers := newMerchant(t, a, 2)
	orders := []map[string]any{{"seller_id": sellers[0].ID, "amount_minor": 6000}, {"seller_id": sellers[1].ID, "amount_minor": 4000}}
	var ok, declined, hosted payment.Checkout
	if code := api.do("POST", "/v1/checkouts", map[string]any{"buyer_id": "b1", "currency": "USD", "mode": "direct",
		"payment_method": "pm_card_visa", "orders": orders}, &ok); code != 201 {
		t.Fatalf("direct checkout: %d", code)
	}
	if code := api.do("POST", "/v1/checkouts", map[string]any{"buyer_id": "b2", "currency": "USD", "mode": "direct",
		"payment_method": "pm_card_declined", "orders": orders[:1]}, &declined); code != 201 {
		t.Fatalf("declined checkout: %d", code)
	}
	if code := api.do("POST", "/v1/checkouts", map[string]any{"buyer_id": "b3", "currency": "JPY", "mode": "hosted",
		"return_url": "http://127.0.0.1/return", "orders": []map[string]any{{"seller_id": sellers[0].ID, "amount_minor": 1500}}}, &hosted); code != 201 {
		t.Fatalf("hosted checkout: %d", code)
	}

	status := func(id string) payment.Checkout {
		var c payment.Checkout
		api.do("GET", "/v1/checkouts/"+id, nil, &c)
		return c
	}
	// The hosted page's URL appears once executor registered the payment.
	var redirect string
	testenv.Eventually(t, 30*time.Second, "hosted checkout registered", func() (bool, error) {
		c := status(hosted.ID.String())
		if c.NextAction != nil {
			redirect = c.NextAction.RedirectURL
		}
		return redirect != "", nil
	})
	page, err := http.Get(redirect)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if page.StatusCode != 200 || !strings.Contains(string(body), "1500") {
		t.Fatalf("hosted page: %d", page.StatusCode)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.PostForm(redirect, url.Values{"cardnumber": {"4242 4242 4242 4242"}, "exp": {"12/39"}, "cvc": {"123"}, "name": {"Ada"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "http://127.0.0.1/return") {
		t.Fatalf("card form: %d %s", res.StatusCode, res.Header.Get("Location"))
	}

	want := map[string]string{ok.ID.String(): payment.StatusCompleted, declined.ID.String(): payment.StatusFailed, hosted.ID.String(): payment.StatusCompleted}
	testenv.Eventually(t, 60*time.Second, "every checkout final", func() (bool, error) {
		for id, st := range want {
			if got := status(id).Status; got != st {
				return false, fmt.Errorf("checkout %s is %s, want %s", id, got, st)
			}
		}
		return true, nil
	})
	// Wallet balances reach the API through wallet.balance.changed.
	testenv.Eventually(t, 30*time.Second, "seller balances", func() (bool, error) {
		var s payment.Seller
		api.do("GET", "/v1/sellers/"+sellers[0].ID.String(), nil, &s)
		got := map[string]int64{}
		for _, b := range s.Balances {
			got[b.Currency] = b.PendingMinor
		}
		// USD 60.00 − 3% = 58.20; JPY 1500 − 3% = 1455.
		if got["USD"] != 5820 || got["JPY"] != 1455 {
			return false, fmt.Errorf("balances %v", got)
		}
		return true, nil
	})
	// With no grace period every in-flight effect counts as missing, so
	// this passes only once the pipeline is quiet and consistent.
	rep := awaitVerified(t, a)
	assertEventsValid(t, a)
	if rep.Counts["orders_complete"] != 3 || rep.Counts["journal_entries"] != 3 || rep.Counts["wallet_changes"] != 3 {
		t.Fatalf("counts %v", rep.Counts)
	}
	for _, id := range []string{ok.ID.String(), declined.ID.String(), hosted.ID.String()} {
		var n int
		if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM pspsim.charges c JOIN pspsim.payments p ON p.id = c.payment_id WHERE p.merchant_reference = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 1 {
			t.Fatalf("checkout %s charged %d times", id, n)
		}
	}
}

// newMerchant creates a merchant (fee 300 bps) and n sellers through the API.
func newMerchant(t *testing.T, a *app, n int) (apiClient, []payment.Seller) {
	t.Helper()
	_, key, err := payment.CreateMerchant(context.Background(), a.pool, "Shop", 300)
	if err != nil {
		t.Fatal(err)
	}
	api := apiClient{t: t, base: "http://" + a.http.Addr(), key: key}
	sellers := make([]payment.Seller, n)
	for i := range sellers {
		if code := api.do("POST", "/v1/sellers", map[string]any{"name": fmt.Sprintf("seller %d", i)}, &sellers[i]); code != 201 {
			t.Fatalf("create seller: %d", code)
		}
	}
	return api, sellers
}

func (c apiClient) checkout(id uuid.UUID) payment.Checkout {
	c.t.Helper()
	var out payment.Checkout
	if code := c.do("GET", "/v1/checkouts/"+id.String(), nil, &out); code != 200 {
		c.t.Fatalf("get checkout %s: %d", id, code)
	}
	return out
}

// awaitStatus waits until the checkout has status want.
func (c apiClient) awaitStatus(id uuid.UUID, want string, timeout time.Duration) payment.Checkout {
	c.t.Helper()
	var got payment.Checkout
	testenv.Eventually(c.t, timeout, "checkout "+id.String()+" "+want, func() (bool, error) {
		got = c.checkout(id)
		if got.Status != want {
			return false, fmt.Errorf("status %s", got.Status)
		}
		return true, nil
	})
	return got
}

// payHosted waits for the hosted page and pays it with card like a browser.
func (c apiClient) payHosted(id uuid.UUID, card string) {
	c.t.Helper()
	var redirect string
	testenv.Eventually(c.t, 30*time.Second, "hosted checkout registered", func() (bool, error) {
		if na := c.checkout(id).NextAction; na != nil {
			redirect = na.RedirectURL
		}
		return redirect != "", nil
	})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.PostForm(redirect, url.Values{"cardnumber": {card}, "exp": {"12/39"}, "cvc": {"123"}, "name": {"Ada"}})
	if err != nil {
		c.t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("card form: %d", res.StatusCode)
	}
}

// charges counts the PSP simulator's charges for a checkout (I1).
func charges(t *testing.T, a *app, checkout uuid.UUID) int {
	t.Helper()
	var n int
	if err := a.pool.QueryRow(context.Background(), `SELECT count(*) FROM pspsim.charges WHERE merchant_reference = $1`, checkout.String()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// awaitVerified waits until every invariant holds on the quiet pipeline.
func awaitVerified(t *testing.T, a *app) verify.Report {
	t.Helper()
	var rep verify.Report
	testenv.Eventually(t, 30*time.Second, "verify to pass on the quiet pipeline", func() (bool, error) {
		var err error
		rep, err = verify.Run(context.Background(), a.pool, verify.Options{Grace: time.Nanosecond})
		if err == nil && !rep.OK() {
			err = fmt.Errorf("violations: %+v", rep.Violations)
		}
		return err == nil, err
	})
	return rep
}

// assertEventsValid checks every event every service wrote against its JSON
// Schema (contracts/schemas): what the code emits, not samples.
func assertEventsValid(t *testing.T, a *app) {
	t.Helper()
	n := 0
	for _, schema := range []string{"payment", "executor", "ledger", "wallet", "payout", "recon"} {
		rows, err := a.pool.Query(context.Background(), `SELECT headers->>'ce-type', payload FROM `+schema+`.outbox`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var typ string
			var payload []byte
			if err := rows.Scan(&typ, &payload); err != nil {
				t.Fatal(err)
			}
			if err := contracts.ValidateEvent(typ, payload); err != nil {
				t.Errorf("%s event %s: %v\n%s", schema, typ, err, payload)
			}
			n++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 {
		t.Fatal("no events to validate")
	}
}
