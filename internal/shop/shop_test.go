package shop

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/payment"
)

func itemByID(t *testing.T, c catalog, id string) item {
	t.Helper()
	for _, it := range c.Items {
		if it.ID == id {
			return it
		}
	}
	t.Fatalf("no item %s", id)
	return item{}
}

func TestParseBasket(t *testing.T) {
	t.Parallel()
	c := demoCatalog()
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	mug, bowl, tea := itemByID(t, c, "mug"), itemByID(t, c, "bowl"), itemByID(t, c, "teapot")
	if mug.Seller == tea.Seller || mug.Seller != bowl.Seller {
		t.Fatal("the test wants mug and bowl from one seller, teapot from the other")
	}

	b, err := c.parseBasket(url.Values{"token": {"x"}, "qty_mug": {"2"}, "qty_bowl": {"10"}, "qty_teapot": {" 1 "}, "qty_vase": {""}}, "token")
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int64, len(c.Sellers))
	want[mug.Seller] = 2*mug.PriceMinor + 10*bowl.PriceMinor
	want[tea.Seller] = tea.PriceMinor
	for i := range want {
		if b.Sellers[i] != want[i] {
			t.Errorf("seller %d: %d, want %d", i, b.Sellers[i], want[i])
		}
	}
	if b.Total != want[0]+want[1] {
		t.Errorf("total %d, want %d", b.Total, want[0]+want[1])
	}

	for name, form := range map[string]url.Values{
		"quantity above 10":  {"qty_mug": {"11"}},
		"negative quantity":  {"qty_mug": {"-1"}},
		"fraction":           {"qty_mug": {"1.5"}},
		"not a number":       {"qty_mug": {"two"}},
		"plus sign":          {"qty_mug": {"+1"}},
		"huge":               {"qty_mug": {"99999999999999999999"}},
		"unknown item":       {"qty_mug": {"1"}, "qty_caviar": {"1"}},
		"unexpected field":   {"qty_mug": {"1"}, "price": {"1"}},
		"repeated field":     {"qty_mug": {"1", "1"}},
		"empty basket":       {"qty_mug": {"0"}, "qty_bowl": {""}},
		"nothing at all":     {},
		"token not declared": {"qty_mug": {"1"}, "token": {"x"}},
	} {
		allowed := []string{"token"}
		if name == "token not declared" {
			allowed = nil
		}
		if _, err := c.parseBasket(form, allowed...); err == nil {
			t.Errorf("%s: accepted", name)
		} else if be := (*basketError)(nil); !errors.As(err, &be) || be.Msg == "" {
			t.Errorf("%s: %v is not a basketError", name, err)
		}
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	now := time.Now()
	clock := func() time.Time { return now }
	tk, err := newTokens(clock)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tk.issue()
	if err != nil {
		t.Fatal(err)
	}
	nonce, err := tk.check(tok)
	if err != nil || !validRef(nonce) || !strings.HasPrefix(tok, nonce+".") {
		t.Fatalf("check(%q) = %q, %v", tok, nonce, err)
	}
	other, _ := tk.issue()
	if n2, _ := tk.check(other); n2 == nonce {
		t.Fatal("two tokens share a nonce")
	}

	parts := strings.Split(tok, ".")
	stranger, err := newTokens(clock)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"empty":            "",
		"tampered nonce":   strings.Repeat("A", len(parts[0])) + "." + parts[1] + "." + parts[2],
		"tampered time":    parts[0] + "." + fmt.Sprint(now.Unix()+1) + "." + parts[2],
		"tampered mac":     parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"two parts":        parts[0] + "." + parts[1],
		"another shop's":   mustIssue(t, stranger),
		"overlong":         tok + strings.Repeat("x", 200),
		"nonce with slash": "a/" + parts[0][2:] + "." + parts[1] + "." + parts[2],
	} {
		if _, err := tk.check(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	now = now.Add(formTTL - time.Second)
	if _, err := tk.check(tok); err != nil {
		t.Errorf("token within its TTL refused: %v", err)
	}
	now = now.Add(2 * time.Second)
	if _, err := tk.check(tok); err == nil {
		t.Error("expired token accepted")
	}
	now = now.Add(-formTTL - 2*clockSkew)
	if _, err := tk.check(tok); err == nil {
		t.Error("token from the future accepted")
	}
}

func mustIssue(t *testing.T, tk tokens) string {
	t.Helper()
	tok, err := tk.issue()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestOrderCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := newOrderCache(3)
	ids := make([]uuid.UUID, 5)
	for i := range ids {
		ids[i] = uuid.New()
		c.put(fmt.Sprint(i), ids[i])
	}
	for i, id := range ids {
		got, ok := c.get(fmt.Sprint(i))
		if want := i >= 2; ok != want || (ok && got != id) {
			t.Errorf("entry %d: %v %v, want present=%v", i, got, ok, want)
		}
	}
	if len(c.ids) != 3 || len(c.order) != 3 {
		t.Fatalf("cache holds %d/%d entries, want 3", len(c.ids), len(c.order))
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"[::]:8080":      "http://127.0.0.1:8080",
		"0.0.0.0:8080":   "http://127.0.0.1:8080",
		":8080":          "http://127.0.0.1:8080",
		"127.0.0.1:9":    "http://127.0.0.1:9",
		"localhost:8080": "http://localhost:8080",
		"[::1]:8080":     "http://[::1]:8080",
	} {
		if got := BaseURL(in); got != want {
			t.Errorf("BaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	ok := Config{APIBaseURL: "http://127.0.0.1:8080/", APIKey: "k", Sellers: []uuid.UUID{uuid.New(), uuid.New()}}
	s, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.PublicURL != "http://127.0.0.1:8080" || s.cfg.CheckoutWait != DefaultCheckoutWait {
		t.Fatalf("defaults: %+v", s.cfg)
	}
	dup := uuid.New()
	for name, mutate := range map[string]func(*Config){
		"no API URL":       func(c *Config) { c.APIBaseURL = "" },
		"relative API URL": func(c *Config) { c.APIBaseURL = "/v1" },
		"ftp public URL":   func(c *Config) { c.PublicURL = "ftp://127.0.0.1" },
		"public URL query": func(c *Config) { c.PublicURL = "http://127.0.0.1?x=1" },
		"no key":           func(c *Config) { c.APIKey = "" },
		"one seller":       func(c *Config) { c.Sellers = c.Sellers[:1] },
		"nil seller":       func(c *Config) { c.Sellers = []uuid.UUID{uuid.Nil, uuid.New()} },
		"same seller":      func(c *Config) { c.Sellers = []uuid.UUID{dup, dup} },
		"wait too long":    func(c *Config) { c.CheckoutWait = time.Minute },
		"negative wait":    func(c *Config) { c.CheckoutWait = -time.Second },
	} {
		c := ok
		c.Sellers = append([]uuid.UUID(nil), ok.Sellers...)
		mutate(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// env is a shop in front of a real payment API on a fresh database. No
// executor runs, so checkouts stay "created": what the shop does once the
// PSP's page exists is cmd/paypipe's browser test's business.
type env struct {
	pool    *pgxpool.Pool
	api     string
	shopURL string
	cfg     Config
	shop    *Shop
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool, _ := testenv.Migrated(t, payment.Schema())
	svc, err := payment.New(payment.Config{}, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	apiSrv := httptest.NewServer(svc.Handler())
	t.Cleanup(apiSrv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, sellers, err := Setup(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler
	shopSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(shopSrv.Close)
	e := &env{pool: pool, api: apiSrv.URL, shopURL: shopSrv.URL,
		cfg: Config{APIBaseURL: apiSrv.URL, PublicURL: shopSrv.URL, APIKey: key, Sellers: sellers, CheckoutWait: 2 * time.Second}}
	if e.shop, err = New(e.cfg); err != nil {
		t.Fatal(err)
	}
	handler = e.shop.Handler()
	return e
}

var noRedirect = &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	res, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func post(t *testing.T, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	res, err := noRedirect.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

var tokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)

// formToken loads the shop page and returns its form token.
func (e *env) formToken(t *testing.T) string {
	t.Helper()
	res, body := get(t, e.shopURL+"/demo")
	m := tokenRE.FindStringSubmatch(body)
	if res.StatusCode != 200 || m == nil {
		t.Fatalf("shop page: %d, token found: %v", res.StatusCode, m != nil)
	}
	return m[1]
}

func (e *env) checkouts(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM payment.checkouts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The shop page lists every item at its formatted price, labels every
// input, and runs no inline code its CSP does not name by hash.
func TestShopPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res, body := get(t, e.shopURL+"/demo")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /demo: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	cat := demoCatalog()
	for _, name := range cat.Sellers {
		if !strings.Contains(body, ">"+name+"</h2>") {
			t.Errorf("seller %s missing", name)
		}
	}
	for _, it := range cat.Items {
		price := money.Format(it.PriceMinor, cat.Currency)
		if !strings.Contains(body, ">"+it.Name+"</h3>") || !strings.Contains(body, ">"+price+"</p>") {
			t.Errorf("item %s at %s missing", it.Name, price)
		}
		if !strings.Contains(body, `<label for="qty-`+it.ID+`">`) || !strings.Contains(body, `id="qty-`+it.ID+`" name="qty_`+it.ID+`"`) {
			t.Errorf("item %s: quantity input without its label", it.ID)
		}
	}
	assertCSP(t, res, body)
	if res, _ := get(t, e.shopURL+"/demo/"); res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/demo" {
		t.Errorf("/demo/: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if res, _ := get(t, e.shopURL+"/demo/checkout"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /demo/checkout: %d", res.StatusCode)
	}
}

var inlineRE = regexp.MustCompile(`(?s)<(style|script)>(.*?)</(?:style|script)>`)

func assertCSP(t *testing.T, res *http.Response, body string) {
	t.Helper()
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.HasPrefix(csp, "default-src 'none';") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	found := map[string]bool{}
	for _, m := range inlineRE.FindAllStringSubmatch(body, -1) {
		found[m[1]] = true
		sum := sha256.Sum256([]byte(m[2]))
		h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		directive := m[1] + "-src "
		i := strings.Index(csp, directive)
		if i < 0 || !strings.Contains(strings.SplitN(csp[i:], ";", 2)[0], h) {
			t.Errorf("inline %s (hash %s) is not allowed by the CSP %q", m[1], h, csp)
		}
	}
	if !found["style"] || !found["script"] {
		t.Errorf("page has no inline style or script: %v", found)
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Errorf("page refers to an external URL")
	}
}

// Invalid baskets and forms are refused with 400 (or 415) and create
// nothing at paypipe.
func TestCheckoutValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.formToken(t)
	forged := tok[:len(tok)-1] + "A"
	if forged == tok {
		forged = tok[:len(tok)-1] + "B"
	}
	for name, c := range map[string]struct {
		form   url.Values
		status int
		says   string
	}{
		"unknown item":      {url.Values{"token": {tok}, "qty_mug": {"1"}, "qty_caviar": {"1"}}, 400, "no item"},
		"quantity 11":       {url.Values{"token": {tok}, "qty_mug": {"11"}}, 400, "from 0 to 10"},
		"negative quantity": {url.Values{"token": {tok}, "qty_mug": {"-1"}}, 400, "from 0 to 10"},
		"empty basket":      {url.Values{"token": {tok}, "qty_mug": {"0"}}, 400, "choose at least one item"},
		"no token":          {url.Values{"qty_mug": {"1"}}, 400, "expired"},
		"forged token":      {url.Values{"token": {forged}, "qty_mug": {"1"}}, 400, "expired"},
		"two tokens":        {url.Values{"token": {tok, tok}, "qty_mug": {"1"}}, 400, "appears 2 times"},
	} {
		res, body := post(t, e.shopURL+"/demo/checkout", c.form)
		if res.StatusCode != c.status || !strings.Contains(strings.ToLower(body), strings.ToLower(c.says)) {
			t.Errorf("%s: %d, want %d saying %q", name, res.StatusCode, c.status, c.says)
		}
		if !strings.Contains(body, `role="alert"`) || !tokenRE.MatchString(body) {
			t.Errorf("%s: the shop is not shown again with the error and a fresh form", name)
		}
	}
	res, err := noRedirect.Post(e.shopURL+"/demo/checkout", "application/json", strings.NewReader(`{"qty_mug":1}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("JSON body: %d", res.StatusCode)
	}
	if n := e.checkouts(t); n != 0 {
		t.Fatalf("%d checkouts created by refused forms", n)
	}
}

// One form submitted twice at once (a double click) makes one checkout at
// paypipe, with one payment order per seller at the basket's amounts, and
// both submits land on the same order; the order page shows what paypipe
// says, marks the return URL's status as a hint, and is found again by a
// shop that never saw the order (a restart or another replica).
func TestDoubleSubmitMakesOneCheckout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.formToken(t)
	cat := demoCatalog()
	form := url.Values{"token": {tok}, "qty_mug": {"2"}, "qty_sencha": {"3"}, "qty_teapot": {"1"}}
	mug, sencha, teapot := itemByID(t, cat, "mug"), itemByID(t, cat, "sencha"), itemByID(t, cat, "teapot")
	want := map[uuid.UUID]int64{
		e.cfg.Sellers[mug.Seller]:    2 * mug.PriceMinor,
		e.cfg.Sellers[sencha.Seller]: 3*sencha.PriceMinor + teapot.PriceMinor,
	}

	var wg sync.WaitGroup
	locs := make([]string, 2)
	codes := make([]int, 2)
	for i := range locs {
		wg.Go(func() {
			res, err := noRedirect.PostForm(e.shopURL+"/demo/checkout", form)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes[i], locs[i] = res.StatusCode, res.Header.Get("Location")
		})
	}
	wg.Wait()
	nonce := strings.SplitN(tok, ".", 2)[0]
	for i := range locs {
		// No executor runs, so the PSP's page never appears and the shop
		// sends the buyer to the order page once CheckoutWait is over.
		if codes[i] != http.StatusSeeOther || locs[i] != "/demo/orders/"+nonce {
			t.Fatalf("submit %d: %d %q", i, codes[i], locs[i])
		}
	}
	if n := e.checkouts(t); n != 1 {
		t.Fatalf("a double submit made %d checkouts, want 1", n)
	}
	var id uuid.UUID
	var returnURL string
	if err := e.pool.QueryRow(context.Background(), `SELECT id, return_url FROM payment.checkouts`).Scan(&id, &returnURL); err != nil {
		t.Fatal(err)
	}
	if returnURL != e.shopURL+"/demo/orders/"+nonce {
		t.Errorf("return_url %q", returnURL)
	}
	rows, err := e.pool.Query(context.Background(), `SELECT seller_id, amount_minor, fee_minor FROM payment.payment_orders WHERE checkout_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uuid.UUID]int64{}
	fees := map[uuid.UUID]int64{}
	for rows.Next() {
		var s uuid.UUID
		var a, f int64
		if err := rows.Scan(&s, &a, &f); err != nil {
			t.Fatal(err)
		}
		got[s], fees[s] = a, f
	}
	if rows.Err() != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("payment orders %v, want %v (%v)", got, want, rows.Err())
	}

	// The same token with another basket is a different request under the
	// same Idempotency-Key: refused, nothing created.
	other := url.Values{"token": {tok}, "qty_vase": {"1"}}
	if res, body := post(t, e.shopURL+"/demo/checkout", other); res.StatusCode != http.StatusConflict || !strings.Contains(body, "already used") {
		t.Errorf("reused token, other basket: %d", res.StatusCode)
	}
	if n := e.checkouts(t); n != 1 {
		t.Fatalf("%d checkouts, want 1", n)
	}

	// The order page, as the PSP would send the buyer back.
	res, body := get(t, e.shopURL+locs[0]+"?checkout="+id.String()+"&status=succeeded")
	if res.StatusCode != 200 {
		t.Fatalf("order page: %d", res.StatusCode)
	}
	for _, s := range []string{"says the payment <strong>succeeded</strong>", "only a hint", `id="checkout-id">` + id.String(),
		`<span id="status" class="chip chip-created">created</span>`, `id="completed" class="done" hidden`} {
		if !strings.Contains(body, s) {
			t.Errorf("order page lacks %q", s)
		}
	}
	assertCSP(t, res, body)
	if _, body := get(t, e.shopURL+locs[0]+"?status=<b>paid</b>"); strings.Contains(body, "<b>paid") || strings.Contains(body, "says the payment") {
		t.Error("an unknown status hint is echoed")
	}

	usd := demoCatalog().Currency
	checkStatus := func(s *Shop, base string) {
		t.Helper()
		res, body := get(t, base+locs[0]+"/status")
		var v orderView
		if res.StatusCode != 200 || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("status: %d %s", res.StatusCode, body)
		}
		if v.CheckoutID != id.String() || v.Status != payment.StatusCreated || v.Final || v.Completed || len(v.Orders) != 2 {
			t.Fatalf("status %+v", v)
		}
		var total int64
		for _, o := range v.Orders {
			var sid uuid.UUID
			for i, name := range cat.Sellers {
				if name == o.Seller {
					sid = e.cfg.Sellers[i]
				}
			}
			fee, err := money.Fee(want[sid], FeeBps)
			if err != nil {
				t.Fatal(err)
			}
			if o.Amount != money.Format(want[sid], usd) || o.Fee != money.Format(fee, usd) || o.Net != money.Format(want[sid]-fee, usd) || fees[sid] != fee {
				t.Errorf("line %+v: want amount %d fee %d", o, want[sid], fee)
			}
			total += want[sid]
		}
		if v.Total != money.Format(total, usd) {
			t.Errorf("total %s, want %s", v.Total, money.Format(total, usd))
		}
	}
	checkStatus(e.shop, e.shopURL)

	// A shop that never saw the order finds it through the API.
	fresh, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	freshSrv := httptest.NewServer(fresh.Handler())
	defer freshSrv.Close()
	if _, ok := fresh.orders.get(nonce); ok {
		t.Fatal("fresh shop has the order cached")
	}
	checkStatus(fresh, freshSrv.URL)
	if got, ok := fresh.orders.get(nonce); !ok || got != id {
		t.Errorf("fresh shop did not cache the order: %v %v", got, ok)
	}

	for _, p := range []string{"/demo/orders/" + strings.Repeat("A", refLen), "/demo/orders/nope", "/demo/orders/" + strings.Repeat("A", refLen) + "/status"} {
		if res, _ := get(t, e.shopURL+p); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, res.StatusCode)
		}
	}
}

// Setup is idempotent (one merchant, the same sellers, a new working key
// each time), safe to run concurrently, and keeps at most maxActiveKeys.
func TestSetup(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Migrated(t, payment.Schema())
	svc, err := payment.New(payment.Config{}, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(svc.Handler())
	defer api.Close()
	ctx := context.Background()

	const n = 4
	keys := make([]string, n)
	sellers := make([][]uuid.UUID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], sellers[i], errs[i] = Setup(ctx, pool) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if fmt.Sprint(sellers[i]) != fmt.Sprint(sellers[0]) || len(sellers[i]) != len(demoCatalog().Sellers) {
			t.Fatalf("sellers differ: %v vs %v", sellers[i], sellers[0])
		}
	}
	for range maxActiveKeys + 2 {
		k, s, err := Setup(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(s) != fmt.Sprint(sellers[0]) {
			t.Fatalf("sellers changed: %v", s)
		}
		keys = append(keys, k)
	}
	var merchants, sellerRows, active int
	var fee int
	if err := pool.QueryRow(ctx, `SELECT count(*), min(fee_bps) FROM payment.merchants WHERE name = $1`, MerchantName).Scan(&merchants, &fee); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payment.sellers`).Scan(&sellerRows); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payment.api_keys WHERE revoked_at IS NULL`).Scan(&active); err != nil {
		t.Fatal(err)
	}
	if merchants != 1 || fee != FeeBps || sellerRows != len(demoCatalog().Sellers) || active != maxActiveKeys {
		t.Fatalf("merchants %d (fee %d), sellers %d, active keys %d", merchants, fee, sellerRows, active)
	}
	// The newest key works and sees the sellers; the oldest was revoked.
	status := func(key string) int {
		req, _ := http.NewRequest("GET", api.URL+"/v1/sellers/"+sellers[0][0].String(), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := status(keys[len(keys)-1]); got != 200 {
		t.Errorf("newest key: %d", got)
	}
	if got := status(keys[0]); got != 401 {
		t.Errorf("oldest key: %d, want 401 (revoked)", got)
	}
}
