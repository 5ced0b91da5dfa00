package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/payment"
	"github.com/paypipe/paypipe/services/psp"
)

// Steps 1 to 3: a merchant and its sellers, the checkouts, and the wait
// until every checkout is final.

const (
	demoFeeBps    = 300 // 3%
	demoReturnURL = "http://127.0.0.1/shop/return"
	// demoCard is the simulator's test card that succeeds.
	demoCard = "4242 4242 4242 4242"
	// stuckHint names the likeliest cause of a checkout that never moves.
	stuckHint = "is a `paypipe serve` using the same database? Its relays would publish the demo's events to its own broker"
)

// demoCheckout is one checkout the demo makes and what became of it.
type demoCheckout struct {
	label string // a, b, c1… as printed
	what  string
	want  string // the final status it must reach
	body  map[string]any

	co      payment.Checkout // the POST's answer
	final   payment.Checkout // the last GET
	path    []string         // payment.status_transitions of the checkout
	finalAt *time.Time
}

// fmtMoney renders minor units with the currency's exponent.
func fmtMoney(amount int64, currency string) string {
	c, err := money.ParseCurrency(currency)
	if err != nil {
		return fmt.Sprintf("%s %d (minor units)", currency, amount)
	}
	return money.Format(amount, c)
}

func (d *demoRun) sellerName(id string) string {
	for _, s := range d.sellers {
		if s.ID.String() == id {
			return s.Name
		}
	}
	return "?"
}

// 1. The merchant (operator tooling: payment.CreateMerchant, as `paypipe
// merchants create` does) and its sellers (the merchant's API).
func (d *demoRun) createMerchant(ctx context.Context) error {
	m, key, err := payment.CreateMerchant(ctx, d.a.pool, "Demo Shop "+d.start.UTC().Format("2006-01-02 15:04:05.000"), demoFeeBps)
	if err != nil {
		return err
	}
	d.api.key = key
	d.say("\n1. A merchant and three sellers")
	d.say("   merchant %q %s, platform fee %d bps, created with payment.CreateMerchant (its API key signs every call below)",
		m.Name, m.ID, m.FeeBps)
	for _, name := range []string{"Atelier Ada", "Babbage Books", "Curie Ceramics"} {
		var s payment.Seller
		if err := d.api.do(ctx, http.MethodPost, "/v1/sellers", uuid.NewString(), map[string]any{"name": name}, http.StatusCreated, &s); err != nil {
			return err
		}
		d.sellers = append(d.sellers, s)
		d.say("   POST /v1/sellers → 201  seller %-15s %s", s.Name, s.ID)
	}
	return nil
}

func demoOrder(s payment.Seller, amount int64) map[string]any {
	return map[string]any{"seller_id": s.ID, "amount_minor": amount}
}

func directCheckout(buyer, currency, method string, orders ...map[string]any) map[string]any {
	return map[string]any{"buyer_id": buyer, "currency": currency, "mode": "direct", "payment_method": method, "orders": orders}
}

// 2. The checkouts, through the API.
func (d *demoRun) createCheckouts(ctx context.Context) error {
	s := d.sellers
	d.say("\n2. Checkouts through POST /v1/checkouts (each with its own Idempotency-Key unless said otherwise)")
	direct := []*demoCheckout{
		{label: "a", what: "direct, USD, split over two sellers, " + psp.MethodCardSucceeds, want: payment.StatusCompleted,
			body: directCheckout("buyer-ada", "USD", psp.MethodCardSucceeds, demoOrder(s[0], 6000), demoOrder(s[1], 4000))},
		{label: "b", what: "direct, EUR, " + psp.MethodCardDeclined, want: payment.StatusFailed,
			body: directCheckout("buyer-bob", "EUR", psp.MethodCardDeclined, demoOrder(s[2], 2500))},
		{label: "c1", what: "direct, JPY (exponent 0: no minor unit), " + psp.MethodCardSucceeds, want: payment.StatusCompleted,
			body: directCheckout("buyer-chiyo", "JPY", psp.MethodCardSucceeds, demoOrder(s[0], 1500))},
		{label: "c2", what: "direct, KWD (exponent 3: fils), " + psp.MethodCardSucceeds, want: payment.StatusCompleted,
			body: directCheckout("buyer-karim", "KWD", psp.MethodCardSucceeds, demoOrder(s[1], 12345))},
	}
	d.trail = direct[0]
	for _, c := range direct {
		if err := d.postCheckout(ctx, c); err != nil {
			return err
		}
	}
	if err := d.hostedCheckout(ctx); err != nil {
		return err
	}
	if err := d.replayedCheckout(ctx); err != nil {
		return err
	}

	// The fee of each order is computed once, by payment, when the
	// checkout is accepted; recompute it from the rate card.
	var orders int
	var why []string
	for _, c := range d.checkouts {
		for _, o := range c.co.Orders {
			orders++
			fee, err := money.Fee(o.AmountMinor, demoFeeBps)
			if err != nil || o.FeeMinor != fee || o.NetMinor != o.AmountMinor-fee {
				why = append(why, fmt.Sprintf("order %s: fee %d net %d for %d (want fee %d)", o.ID, o.FeeMinor, o.NetMinor, o.AmountMinor, fee))
			}
		}
	}
	d.check("   ", fmt.Sprintf("fees of all %d orders at %d bps rounded half up, net = amount − fee", orders, demoFeeBps), len(why) == 0, why...)
	return nil
}

// postCheckout creates c with a fresh Idempotency-Key and prints it.
func (d *demoRun) postCheckout(ctx context.Context, c *demoCheckout) error {
	if err := d.api.do(ctx, http.MethodPost, "/v1/checkouts", uuid.NewString(), c.body, http.StatusCreated, &c.co); err != nil {
		return fmt.Errorf("checkout %s: %w", c.label, err)
	}
	d.addCheckout(c)
	return nil
}

func (d *demoRun) addCheckout(c *demoCheckout) {
	d.checkouts = append(d.checkouts, c)
	d.say("   %s. %s\n      → 201 checkout %s, %s, status %s", c.label, c.what, c.co.ID, fmtMoney(c.co.AmountMinor, c.co.Currency), c.co.Status)
	t := d.table("        ")
	for _, o := range c.co.Orders {
		t.row("order "+o.ID.String(), d.sellerName(o.SellerID.String()), fmtMoney(o.AmountMinor, o.Currency),
			"fee "+fmtMoney(o.FeeMinor, o.Currency), "net "+fmtMoney(o.NetMinor, o.Currency))
	}
	_ = t.flush()
}

func (d *demoRun) getCheckout(ctx context.Context, id uuid.UUID) (payment.Checkout, error) {
	var c payment.Checkout
	err := d.api.do(ctx, http.MethodGet, "/v1/checkouts/"+id.String(), "", nil, http.StatusOK, &c)
	return c, err
}

// hostedCheckout: the buyer pays on the PSP's page. paypipe never sees
// the card; the demo plays the buyer's browser.
func (d *demoRun) hostedCheckout(ctx context.Context) error {
	c := &demoCheckout{label: "d", what: "hosted, EUR: the buyer pays on the PSP's page", want: payment.StatusCompleted,
		body: map[string]any{"buyer_id": "buyer-dora", "currency": "EUR", "mode": "hosted", "return_url": demoReturnURL,
			"orders": []map[string]any{demoOrder(d.sellers[2], 4200)}}}
	if err := d.postCheckout(ctx, c); err != nil {
		return err
	}
	posted := time.Now()
	var redirect string
	if err := waitFor(ctx, 20*time.Second, "the hosted checkout's next_action", func(ctx context.Context) (bool, error) {
		got, err := d.getCheckout(ctx, c.co.ID)
		if got.NextAction != nil {
			redirect = got.NextAction.RedirectURL
		}
		return redirect != "", err
	}); err != nil {
		return fmt.Errorf("%w (%s)", err, stuckHint)
	}
	d.say("      GET /v1/checkouts/%s shows next_action.redirect_url after %s (executor registered the payment at the PSP):",
		c.co.ID, time.Since(posted).Round(time.Millisecond))
	d.say("        %s", redirect)

	page, err := url.Parse(redirect)
	if err != nil {
		return fmt.Errorf("redirect_url: %w", err)
	}
	ans, err := d.api.getPage(ctx, redirect)
	if err != nil {
		return err
	}
	if ans.status != http.StatusOK {
		return fmt.Errorf("GET hosted page: %d", ans.status)
	}
	form, err := parseHostedPage(page, ans.body)
	if err != nil {
		return err
	}
	for _, f := range []string{"cardnumber", "exp", "cvc", "name"} {
		if !slices.Contains(form.fields, f) {
			return fmt.Errorf("hosted page: the form has no %q field (fields: %v)", f, form.fields)
		}
	}
	d.say("      GET the page → %d %s: %q, a form (%s, fields %s)", ans.status, ans.header.Get("Content-Type"),
		"Pay "+form.amount, form.method, strings.Join(form.fields, ", "))
	d.check("      ", "the page asks for the checkout's amount", form.amount == fmtMoney(c.co.AmountMinor, c.co.Currency),
		fmt.Sprintf("page shows %q, checkout is %s", form.amount, fmtMoney(c.co.AmountMinor, c.co.Currency)))

	exp := fmt.Sprintf("12/%02d", (time.Now().Year()+3)%100)
	values := url.Values{"cardnumber": {demoCard}, "exp": {exp}, "cvc": {"123"}, "name": {"Dora Buyer"}}
	ans, err = d.api.submitForm(ctx, form, values)
	if err != nil {
		return err
	}
	loc := ans.header.Get("Location")
	d.say("      submit it as a browser does: %s %s, application/x-www-form-urlencoded, card %s, exp %s, cvc 123",
		form.method, form.action, demoCard, exp)
	d.say("      → %d %s, Location: %s", ans.status, http.StatusText(ans.status), loc)
	hint := ""
	if u, err := url.Parse(loc); err == nil {
		hint = u.Query().Get("status")
	}
	d.say("      (not followed. The return URL says status=%s, but that is only a hint anyone can type: paypipe acts on", hint)
	d.say("       the PSP's signed webhook, and a merchant trusts GET /v1/checkouts/{id}, below)")
	d.check("      ", "the PSP took the card and sent the buyer back to the merchant",
		ans.status == http.StatusSeeOther && strings.HasPrefix(loc, demoReturnURL),
		fmt.Sprintf("answer %d, Location %q", ans.status, loc))
	return nil
}

// replayedCheckout posts one checkout twice with one Idempotency-Key, as a
// client retrying after a lost answer does.
func (d *demoRun) replayedCheckout(ctx context.Context) error {
	c := &demoCheckout{label: "e", what: "direct, USD, " + psp.MethodCardSucceeds + ", sent twice with the same Idempotency-Key",
		want: payment.StatusCompleted, body: directCheckout("buyer-eve", "USD", psp.MethodCardSucceeds, demoOrder(d.sellers[2], 1999))}
	key := uuid.NewString()
	first, err := d.api.call(ctx, http.MethodPost, "/v1/checkouts", key, c.body)
	if err != nil {
		return err
	}
	if first.status != http.StatusCreated {
		return fmt.Errorf("checkout e: %d %s", first.status, first.body)
	}
	if err := json.Unmarshal(first.body, &c.co); err != nil {
		return fmt.Errorf("checkout e: %w", err)
	}
	d.addCheckout(c)
	second, err := d.api.call(ctx, http.MethodPost, "/v1/checkouts", key, c.body)
	if err != nil {
		return err
	}
	d.say("      Idempotency-Key %s", key)
	replayed := func(a apiAnswer) string { return cmp.Or(a.header.Get("Idempotent-Replayed"), "(absent)") }
	d.say("      first  POST → %d, Idempotent-Replayed: %s", first.status, replayed(first))
	d.say("      second POST → %d, Idempotent-Replayed: %s, body identical to the first: %v (%d bytes)",
		second.status, replayed(second), bytes.Equal(first.body, second.body), len(second.body))
	d.check("      ", "the second answer is the first one replayed, not a second checkout",
		second.status == first.status && second.header.Get("Idempotent-Replayed") == "true" &&
			first.header.Get("Idempotent-Replayed") == "" && bytes.Equal(first.body, second.body),
		fmt.Sprintf("second: %d, replayed %q, same body %v", second.status, second.header.Get("Idempotent-Replayed"), bytes.Equal(first.body, second.body)))
	return nil
}

// 3. Wait, bounded, until every checkout is final.
func (d *demoRun) awaitFinal(ctx context.Context) error {
	d.say("\n3. Waiting for every checkout to be final (completed: ledger and wallet recorded every order; or failed)")
	t0 := time.Now()
	pending := map[uuid.UUID]*demoCheckout{}
	for _, c := range d.checkouts {
		pending[c.co.ID] = c
	}
	if err := waitFor(ctx, 30*time.Second, "every checkout to be final", func(ctx context.Context) (bool, error) {
		for id, c := range pending {
			got, err := d.getCheckout(ctx, id)
			if err != nil {
				return false, err
			}
			c.final = got
			if payment.Terminal(got.Status) {
				delete(pending, id)
			}
		}
		return len(pending) == 0, nil
	}); err != nil {
		var left []string
		for _, c := range pending {
			left = append(left, c.label+" "+c.final.Status)
		}
		return fmt.Errorf("%w: still pending: %s (%s)", err, strings.Join(left, ", "), stuckHint)
	}
	d.say("   all %d final %s after the last POST", len(d.checkouts), time.Since(t0).Round(time.Millisecond))
	if err := d.loadPaths(ctx); err != nil {
		return err
	}

	t := d.table("   ", "CHECKOUT", "MODE", "AMOUNT", "STATUS", "FAILURE", "FINAL AFTER", "STATUS PATH (payment.status_transitions)")
	var why []string
	for _, c := range d.checkouts {
		f := c.final
		t.row(c.label, f.Mode, fmtMoney(f.AmountMinor, f.Currency), f.Status,
			cmp.Or(f.FailureCode, "-"), since(f.CreatedAt, c.finalAt), strings.Join(c.path, " → "))
		if f.Status != c.want {
			why = append(why, fmt.Sprintf("%s is %s, want %s", c.label, f.Status, c.want))
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	d.say("   (FINAL AFTER counts from the checkout's creation: PSP call, webhook, ledger, wallet and completion all happened in it)")
	d.check("   ", "the declined card failed, every other checkout completed", len(why) == 0, why...)
	return nil
}

// loadPaths reads each checkout's status history.
func (d *demoRun) loadPaths(ctx context.Context) error {
	byID := map[uuid.UUID]*demoCheckout{}
	ids := make([]uuid.UUID, 0, len(d.checkouts))
	for _, c := range d.checkouts {
		byID[c.co.ID] = c
		ids = append(ids, c.co.ID)
		c.path = nil
	}
	rows, err := d.a.pool.Query(ctx, `SELECT object_id, to_status, at FROM payment.status_transitions
WHERE object_type = 'checkout' AND object_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return fmt.Errorf("status transitions: %w", err)
	}
	var id uuid.UUID
	var to string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &to, &at}, func() error {
		if c := byID[id]; c != nil {
			c.path = append(c.path, to)
			if payment.Terminal(to) {
				t := at
				c.finalAt = &t
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("status transitions: %w", err)
	}
	return nil
}
