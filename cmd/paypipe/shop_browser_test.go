package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/shop"
	"github.com/paypipe/paypipe/services/payment"
)

// Where the test leaves its screenshots (not part of the repository).
const (
	shopScreenshot  = "/tmp/paypipe-demo-shop.png"
	orderScreenshot = "/tmp/paypipe-demo-order.png"
)

// chromiumPath finds Debian's chromium (CI installs it; see .ci/run).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// A buyer in a real browser: opens the demo shop, chooses items from both
// sellers, pays on the PSP simulator's hosted page with a test card, comes
// back to the shop's order page and watches it reach "completed". Then the
// checkout is completed at paypipe and the ledger holds one balanced entry
// per seller's order with the platform's fee.
//
// Not parallel: a browser and the whole pipeline on a shared machine is
// enough load for one test at a time.
func TestDemoShopInBrowser(t *testing.T) {
	chromium := chromiumPath()
	if chromium == "" {
		t.Skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
	}
	a := startApp(t)
	ctx := context.Background()
	key, sellers, err := shop.Setup(ctx, a.pool)
	if err != nil {
		t.Fatal(err)
	}
	shopURL := mountedShop(t, a)
	if shopURL == "" {
		// Not mounted in the app: the shop on a server of its own, calling
		// paypipe's API as any merchant's site would (the same handler).
		var handler http.Handler
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
		defer srv.Close()
		log := slog.New(slog.DiscardHandler)
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
		sh, err := shop.New(shop.Config{APIBaseURL: shop.BaseURL(a.http.Addr()), PublicURL: srv.URL, APIKey: key, Sellers: sellers, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		handler = sh.Handler()
		shopURL = srv.URL
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 1000),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	bctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	location := func() string {
		t.Helper()
		u, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	screenshot := func(path string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}

	// The shop: 2 mugs (Northwind Ceramics) and a teapot (Harbor Tea Co.);
	// typing fires the input events the page's total listens to.
	const mugs, teapots = 2, 1
	step("open the shop", chromedp.Navigate(shopURL+"/demo"), chromedp.WaitVisible(chromedp.CSS("#pay")))
	step("choose items",
		chromedp.Clear(chromedp.CSS("#qty-mug")), chromedp.SendKeys(chromedp.CSS("#qty-mug"), fmt.Sprint(mugs)),
		chromedp.Clear(chromedp.CSS("#qty-teapot")), chromedp.SendKeys(chromedp.CSS("#qty-teapot"), fmt.Sprint(teapots)))
	usd, err := money.ParseCurrency("USD")
	if err != nil {
		t.Fatal(err)
	}
	mugPrice, teapotPrice := priceOf(t, text, "mug"), priceOf(t, text, "teapot")
	want := map[uuid.UUID]int64{sellers[0]: mugs * mugPrice, sellers[1]: teapots * teapotPrice}
	total := want[sellers[0]] + want[sellers[1]]
	if got := text("#total"); got != money.Format(total, usd) {
		t.Fatalf("total on the page %q, want %q", got, money.Format(total, usd))
	}
	screenshot(shopScreenshot)

	// Pay: the shop creates the checkout and sends the browser to the PSP.
	step("pay", chromedp.Click(chromedp.CSS("#pay")), chromedp.WaitVisible(chromedp.CSS("#cardnumber")))
	if u := location(); !strings.HasPrefix(u, a.sim.url+"/pay/") {
		t.Fatalf("after Pay the browser is at %s, want the PSP's page under %s", u, a.sim.url)
	}
	if got := text(".amount"); got != money.Format(total, usd) {
		t.Fatalf("the PSP asks for %q, want %q", got, money.Format(total, usd))
	}
	step("fill the card form",
		chromedp.SendKeys(chromedp.CSS("#cardnumber"), "4242 4242 4242 4242"),
		chromedp.SendKeys(chromedp.CSS("#exp"), "12/39"),
		chromedp.SendKeys(chromedp.CSS("#cvc"), "123"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Ada Lovelace"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#order")))
	if u := location(); !strings.HasPrefix(u, shopURL+"/demo/orders/") || !strings.Contains(u, "status=succeeded") {
		t.Fatalf("after paying the browser is at %s, want the shop's order page", u)
	}

	// The page polls until paypipe says completed. (It usually lands on
	// requires_action: the PSP redirects before its webhook is delivered.)
	t.Logf("the order page first showed %q", text("#status"))
	wctx, wcancel := context.WithTimeout(bctx, 30*time.Second)
	defer wcancel()
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS("#completed"))); err != nil {
		t.Fatalf("the order page never showed completed (status %q): %v", text("#status"), err)
	}
	if got := text("#status"); got != payment.StatusCompleted {
		t.Errorf("status chip %q", got)
	}
	if steps := text("#steps"); strings.Count(steps, "(done)") != 3 {
		t.Errorf("steps %q, want all three done", steps)
	}
	split := text("#orders")
	for _, name := range []string{"Northwind Ceramics", "Harbor Tea Co."} {
		if !strings.Contains(split, name) {
			t.Errorf("the split lacks %s: %q", name, split)
		}
	}
	if got := text("#sum-amount"); got != money.Format(total, usd) {
		t.Errorf("order total %q, want %q", got, money.Format(total, usd))
	}
	screenshot(orderScreenshot)
	id, err := uuid.Parse(text("#checkout-id"))
	if err != nil {
		t.Fatal(err)
	}

	// What paypipe says: the checkout is completed, one order per seller at
	// the basket's amounts, and only this one checkout exists.
	api := apiClient{t: t, base: "http://" + a.http.Addr(), key: key}
	var co payment.Checkout
	if code := api.do("GET", "/v1/checkouts/"+id.String(), nil, &co); code != 200 || co.Status != payment.StatusCompleted || co.AmountMinor != total {
		t.Fatalf("checkout: %d %s %d", code, co.Status, co.AmountMinor)
	}
	var n int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM payment.checkouts`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d checkouts (%v), want 1", n, err)
	}
	if len(co.Orders) != 2 {
		t.Fatalf("%d orders", len(co.Orders))
	}
	// The ledger: per order one entry, Dr psp_receivable amount = Cr
	// seller_payable:<seller> net + Cr platform_fee_revenue fee.
	for _, o := range co.Orders {
		fee, err := money.Fee(want[o.SellerID], shop.FeeBps)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != payment.StatusCompleted || o.AmountMinor != want[o.SellerID] || o.FeeMinor != fee {
			t.Fatalf("order %+v: want amount %d fee %d", o, want[o.SellerID], fee)
		}
		rows, err := a.pool.Query(ctx, `SELECT e.id, p.account, p.direction, p.amount_minor
FROM ledger.journal_entries e JOIN ledger.postings p ON p.entry_id = e.id
WHERE e.payment_order_id = $1 AND e.currency = 'USD'`, o.ID.String())
		if err != nil {
			t.Fatal(err)
		}
		entries := map[uuid.UUID]bool{}
		got := map[string]int64{}
		for rows.Next() {
			var eid uuid.UUID
			var account, dir string
			var amount int64
			if err := rows.Scan(&eid, &account, &dir, &amount); err != nil {
				t.Fatal(err)
			}
			entries[eid] = true
			got[dir+" "+account] += amount
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		wantPostings := map[string]int64{
			"debit " + contracts.AccountPSPReceivable:                              want[o.SellerID],
			"credit " + contracts.AccountSellerPayablePrefix + o.SellerID.String(): want[o.SellerID] - fee,
			"credit " + contracts.AccountPlatformFeeRevenue:                        fee,
		}
		if len(entries) != 1 || fmt.Sprint(got) != fmt.Sprint(wantPostings) {
			t.Errorf("order %s: %d entries, postings %v, want one entry with %v", o.ID, len(entries), got, wantPostings)
		}
	}
}

// mountedShop returns the app's own base URL if it serves the demo shop,
// else "". Setup is idempotent, so the test's Setup above found the
// merchant and sellers the app's made, with a key of its own.
func mountedShop(t *testing.T, a *app) string {
	t.Helper()
	base := shop.BaseURL(a.http.Addr())
	res, err := http.Get(base + "/demo")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return ""
	}
	return base
}

// priceOf reads an item's price off the shop page ("USD 18.00") in minor
// units, so that the test checks the page's arithmetic against what it shows.
func priceOf(t *testing.T, text func(string) string, itemID string) int64 {
	t.Helper()
	s := text(fmt.Sprintf(`li:has(#qty-%s) .price`, itemID))
	code, amount, ok := strings.Cut(s, " ")
	if !ok || code != "USD" {
		t.Fatalf("price %q", s)
	}
	major, minor, ok := strings.Cut(amount, ".")
	var m, c int64
	if _, err := fmt.Sscanf(major+" "+minor, "%d %d", &m, &c); err != nil || !ok || len(minor) != 2 {
		t.Fatalf("price %q: %v", s, err)
	}
	return m*100 + c
}
