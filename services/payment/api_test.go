package payment_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/payment"
)

// tenant is a merchant with a working API key.
type tenant struct {
	id     uuid.UUID
	key    string
	feeBps int
}

// apiEnv is one test's payment service on a fresh database, served over
// real HTTP, with two merchants (A and B) to probe isolation.
type apiEnv struct {
	t    *testing.T
	pool *pgxpool.Pool
	svc  *payment.Service
	url  string
	a, b tenant
}

func newAPIEnv(t *testing.T, cfg payment.Config) *apiEnv {
	t.Helper()
	pool, _ := testenv.Migrated(t, payment.Schema())
	svc, err := payment.New(cfg, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	e := &apiEnv{t: t, pool: pool, svc: svc, url: srv.URL}
	e.a = e.merchant("Merchant A", 300)
	e.b = e.merchant("Merchant B", 250)
	return e
}

func (e *apiEnv) merchant(name string, feeBps int) tenant {
	e.t.Helper()
	m, key, err := payment.CreateMerchant(context.Background(), e.pool, name, feeBps)
	if err != nil {
		e.t.Fatal(err)
	}
	return tenant{id: m.ID, key: key, feeBps: feeBps}
}

type apiResp struct {
	status int
	header http.Header
	body   []byte
}

// request sends one request. hdr entries override the defaults
// (Authorization from key, and for bodies Content-Type: application/json);
// an empty value removes the header.
func (e *apiEnv) request(method, path, key string, body []byte, hdr map[string]string) apiResp {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return apiResp{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *apiEnv) get(key, path string) apiResp { return e.request(http.MethodGet, path, key, nil, nil) }

func (e *apiEnv) post(key, path, idemKey string, body string) apiResp {
	e.t.Helper()
	return e.request(http.MethodPost, path, key, []byte(body), map[string]string{"Idempotency-Key": idemKey})
}

// decode unmarshals a response body, failing on unexpected status.
func decode[T any](t *testing.T, r apiResp, wantStatus int) T {
	t.Helper()
	if r.status != wantStatus {
		t.Fatalf("status %d, want %d: %s", r.status, wantStatus, r.body)
	}
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// problem checks r is a problem document with the status and code, and
// returns it.
func problem(t *testing.T, r apiResp, wantStatus int, wantCode payment.Code) payment.Problem {
	t.Helper()
	if r.status != wantStatus {
		t.Fatalf("status %d, want %d: %s", r.status, wantStatus, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p payment.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	wantType := "https://paypipe.dev/problems/" + strings.ReplaceAll(string(wantCode), "_", "-")
	if p.Code != wantCode || p.Type != wantType || p.Status != wantStatus || p.Title == "" {
		t.Fatalf("problem %+v, want code %s type %s status %d", p, wantCode, wantType, wantStatus)
	}
	return p
}

func hasFieldError(p payment.Problem, field, code string) bool {
	for _, fe := range p.Errors {
		if (field == "" || fe.Field == field) && fe.Code == code {
			return true
		}
	}
	return false
}

// tables are every table of the payment schema a request could write.
var tables = []string{"sellers", "checkouts", "payment_orders", "status_transitions", "outbox", "idempotency_keys",
	"seller_balances", "webhook_receipts", "quarantine", "inbox", "refunds", "fulfilments", "payouts"}

func (e *apiEnv) counts() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, tb := range tables {
		var n int
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM payment.`+tb).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out[tb] = n
	}
	return out
}

func (e *apiEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *apiEnv) seller(m tenant, name string) uuid.UUID {
	e.t.Helper()
	s := decode[payment.Seller](e.t, e.post(m.key, "/v1/sellers", uuid.NewString(), fmt.Sprintf(`{"name":%q}`, name)), http.StatusCreated)
	return s.ID
}

func checkoutBody(currency string, orders map[uuid.UUID]int64) string {
	var parts []string
	for s, a := range orders {
		parts = append(parts, fmt.Sprintf(`{"seller_id":%q,"amount_minor":%d}`, s, a))
	}
	slices.Sort(parts)
	return fmt.Sprintf(`{"buyer_id":"buyer-1","currency":%q,"mode":"hosted","return_url":"https://shop.example/return","orders":[%s]}`,
		currency, strings.Join(parts, ","))
}

func TestCreateCheckoutWritesEverythingInOneTransaction(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	ctx := context.Background()
	s1, s2, s3 := e.seller(e.a, "s1"), e.seller(e.a, "s2"), e.seller(e.a, "s3")
	// Amounts whose fees round: 333 × 3% = 9.99 → 10, 10050 × 3% = 301.5 → 302 (half up), 1 × 3% → 0.
	amounts := []int64{333, 10050, 1}
	sellers := []uuid.UUID{s1, s2, s3}
	body := fmt.Sprintf(`{"buyer_id":"buyer-42","currency":"EUR","mode":"hosted","return_url":"https://shop.example/back?x=1",
"orders":[{"seller_id":%q,"amount_minor":%d},{"seller_id":%q,"amount_minor":%d},{"seller_id":%q,"amount_minor":%d}]}`,
		s1, amounts[0], s2, amounts[1], s3, amounts[2])
	r := e.post(e.a.key, "/v1/checkouts", "create-1", body)
	co := decode[payment.Checkout](t, r, http.StatusCreated)
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("headers %v", r.header)
	}
	total, err := money.Sum(amounts...)
	if err != nil {
		t.Fatal(err)
	}
	if co.Status != payment.StatusCreated || co.Currency != "EUR" || co.AmountMinor != total || co.Mode != "hosted" ||
		co.BuyerID != "buyer-42" || co.ReturnURL != "https://shop.example/back?x=1" || co.NextAction != nil ||
		co.CreatedAt.IsZero() || len(co.Orders) != 3 {
		t.Fatalf("checkout %+v", co)
	}
	var feeSum, netSum int64
	for i, o := range co.Orders {
		wantFee, err := money.Fee(amounts[i], e.a.feeBps)
		if err != nil {
			t.Fatal(err)
		}
		if o.SellerID != sellers[i] || o.AmountMinor != amounts[i] || o.FeeMinor != wantFee || o.FeeMinor+o.NetMinor != o.AmountMinor ||
			o.Status != payment.StatusCreated || o.CheckoutID != co.ID || o.Currency != "EUR" {
			t.Fatalf("order %d: %+v (want fee %d)", i, o, wantFee)
		}
		feeSum += o.FeeMinor
		netSum += o.NetMinor
	}
	if feeSum+netSum != total {
		t.Fatalf("fees %d + nets %d != total %d", feeSum, netSum, total)
	}

	// The rows.
	c := e.counts()
	if c["checkouts"] != 1 || c["payment_orders"] != 3 || c["status_transitions"] != 4 || c["outbox"] != 1 || c["idempotency_keys"] != 1+3 /* the sellers' */ {
		t.Fatalf("rows: %v", c)
	}
	if n := e.count(`SELECT count(*) FROM payment.checkouts WHERE id = $1 AND merchant_id = $2 AND amount_minor = $3`, co.ID, e.a.id, total); n != 1 {
		t.Fatal("checkout row does not match the response")
	}
	if n := e.count(`SELECT count(*) FROM payment.status_transitions WHERE to_status = 'created' AND cause = 'created'
AND object_id = ANY($1)`, []uuid.UUID{co.ID, co.Orders[0].ID, co.Orders[1].ID, co.Orders[2].ID}); n != 4 {
		t.Fatalf("%d creation transitions, want 4", n)
	}

	// The event: payments.checkout.created, aggregate = checkout, version 1,
	// payload a contracts.CheckoutCreated with the same split.
	var subject, agg string
	var headers map[string]string
	var payload []byte
	if err := e.pool.QueryRow(ctx, `SELECT subject, aggregate_id, headers, payload FROM payment.outbox`).Scan(&subject, &agg, &headers, &payload); err != nil {
		t.Fatal(err)
	}
	if subject != contracts.SubjectCheckoutCreated || agg != co.ID.String() ||
		headers[outbox.HeaderType] != contracts.TypeOf(contracts.SubjectCheckoutCreated) ||
		headers[outbox.HeaderSource] != contracts.SourcePayment || headers[outbox.HeaderAggregateVersion] != "1" ||
		headers[outbox.HeaderCorrelationID] != r.header.Get("Request-Id") {
		t.Fatalf("outbox row: %s %s %v (request id %s)", subject, agg, headers, r.header.Get("Request-Id"))
	}
	var ev contracts.CheckoutCreated
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("payload %s: %v", payload, err)
	}
	if ev.CheckoutID != co.ID.String() || ev.MerchantID != e.a.id.String() || ev.BuyerID != "buyer-42" || ev.Currency != "EUR" ||
		ev.AmountMinor != total || ev.Mode != contracts.ModeHosted || ev.ReturnURL != co.ReturnURL || ev.PaymentMethod != "" ||
		!ev.CreatedAt.Equal(co.CreatedAt) || len(ev.Orders) != 3 {
		t.Fatalf("event %+v", ev)
	}
	var evSum int64
	for i, o := range ev.Orders {
		want := co.Orders[i]
		if o.PaymentOrderID != want.ID.String() || o.SellerID != want.SellerID.String() || o.AmountMinor != want.AmountMinor ||
			o.FeeMinor != want.FeeMinor || o.NetMinor != want.NetMinor || o.FeeMinor+o.NetMinor != o.AmountMinor {
			t.Fatalf("event order %d: %+v, response %+v", i, o, want)
		}
		evSum += o.AmountMinor
	}
	if evSum != ev.AmountMinor {
		t.Fatalf("event orders sum to %d, total %d", evSum, ev.AmountMinor)
	}

	// GETs return the same objects.
	got := decode[payment.Checkout](t, e.get(e.a.key, "/v1/checkouts/"+co.ID.String()), http.StatusOK)
	if !reflect.DeepEqual(got, co) {
		t.Fatalf("GET checkout:\n%+v\nPOST:\n%+v", got, co)
	}
	po := decode[payment.PaymentOrder](t, e.get(e.a.key, "/v1/payment_orders/"+co.Orders[1].ID.String()), http.StatusOK)
	if !reflect.DeepEqual(po, co.Orders[1]) {
		t.Fatalf("GET payment order %+v, want %+v", po, co.Orders[1])
	}

	// Direct mode carries the payment method; amounts are minor units of
	// the currency's own exponent (JPY has none: 1500 is ¥1500).
	r = e.post(e.a.key, "/v1/checkouts", "create-2", fmt.Sprintf(
		`{"buyer_id":"b","currency":"JPY","mode":"direct","payment_method":"pm_card_visa","orders":[{"seller_id":%q,"amount_minor":1500}]}`, s1))
	direct := decode[payment.Checkout](t, r, http.StatusCreated)
	if direct.AmountMinor != 1500 || direct.Currency != "JPY" || direct.Mode != "direct" {
		t.Fatalf("direct checkout %+v", direct)
	}
	if err := e.pool.QueryRow(ctx, `SELECT payload FROM payment.outbox WHERE aggregate_id = $1`, direct.ID.String()).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(payload, &ev); err != nil || ev.PaymentMethod != "pm_card_visa" || ev.Orders[0].AmountMinor != 1500 {
		t.Fatalf("direct event %s: %v", payload, err)
	}
	// http is accepted for localhost return URLs (development).
	decode[payment.Checkout](t, e.post(e.a.key, "/v1/checkouts", "create-3", fmt.Sprintf(
		`{"buyer_id":"b","currency":"USD","mode":"hosted","return_url":"http://localhost:3000/r","orders":[{"seller_id":%q,"amount_minor":5}]}`, s1)),
		http.StatusCreated)
}

func TestNextAction(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	s := e.seller(e.a, "s")
	co := decode[payment.Checkout](t, e.post(e.a.key, "/v1/checkouts", "k", checkoutBody("USD", map[uuid.UUID]int64{s: 1000})), http.StatusCreated)
	// What the event side does when the PSP answers with a hosted page.
	const page = "https://psp.example/pay/123"
	if _, err := e.pool.Exec(context.Background(), `UPDATE payment.checkouts SET status = 'requires_action', redirect_url = $2 WHERE id = $1`, co.ID, page); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(context.Background(), `UPDATE payment.payment_orders SET status = 'requires_action' WHERE checkout_id = $1`, co.ID); err != nil {
		t.Fatal(err)
	}
	want := &payment.NextAction{Type: "redirect_to_url", RedirectURL: page}
	got := decode[payment.Checkout](t, e.get(e.a.key, "/v1/checkouts/"+co.ID.String()), http.StatusOK)
	if got.Status != payment.StatusRequiresAction || !reflect.DeepEqual(got.NextAction, want) || !reflect.DeepEqual(got.Orders[0].NextAction, want) {
		t.Fatalf("checkout %+v", got)
	}
	po := decode[payment.PaymentOrder](t, e.get(e.a.key, "/v1/payment_orders/"+co.Orders[0].ID.String()), http.StatusOK)
	if !reflect.DeepEqual(po.NextAction, want) {
		t.Fatalf("payment order next_action %+v", po.NextAction)
	}
	// Once the buyer has paid there is nothing left to do.
	if _, err := e.pool.Exec(context.Background(), `UPDATE payment.checkouts SET status = 'processing' WHERE id = $1`, co.ID); err != nil {
		t.Fatal(err)
	}
	if got := decode[payment.Checkout](t, e.get(e.a.key, "/v1/checkouts/"+co.ID.String()), http.StatusOK); got.NextAction != nil {
		t.Fatalf("processing checkout has next_action %+v", got.NextAction)
	}
}

func TestSellers(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	// S12: text is stored verbatim; every query is parameterised.
	name := `Robert'); DROP TABLE payment.sellers;-- "<b>"`
	r := e.post(e.a.key, "/v1/sellers", "s-1", fmt.Sprintf(`{"name":%q}`, name))
	s := decode[payment.Seller](t, r, http.StatusCreated)
	if s.Name != name || s.ID == uuid.Nil || s.Balances == nil || len(s.Balances) != 0 || !strings.Contains(string(r.body), `"balances":[]`) {
		t.Fatalf("created seller %s", r.body)
	}
	got := decode[payment.Seller](t, e.get(e.a.key, "/v1/sellers/"+s.ID.String()), http.StatusOK)
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("GET %+v, want %+v", got, s)
	}
	// Balances come from the projection the event side maintains.
	for _, b := range []payment.Balance{{Currency: "USD", PendingMinor: 970, AvailableMinor: 50, PaidOutMinor: 7}, {Currency: "EUR", PendingMinor: 1}} {
		if _, err := e.pool.Exec(context.Background(), `INSERT INTO payment.seller_balances
(seller_id, currency, merchant_id, pending_minor, available_minor, paid_out_minor, version) VALUES ($1, $2, $3, $4, $5, $6, 1)`,
			s.ID, b.Currency, e.a.id, b.PendingMinor, b.AvailableMinor, b.PaidOutMinor); err != nil {
			t.Fatal(err)
		}
	}
	got = decode[payment.Seller](t, e.get(e.a.key, "/v1/sellers/"+s.ID.String()), http.StatusOK)
	want := []payment.Balance{{Currency: "EUR", PendingMinor: 1}, {Currency: "USD", PendingMinor: 970, AvailableMinor: 50, PaidOutMinor: 7}}
	if !reflect.DeepEqual(got.Balances, want) {
		t.Fatalf("balances %+v, want %+v", got.Balances, want)
	}

	before := e.counts()
	for i, tc := range []struct {
		body, code string
	}{
		{`{}`, payment.FieldRequired},
		{`{"name":"   "}`, payment.FieldInvalidString},
		{`{"name":"a\nb"}`, payment.FieldInvalidString},
		{fmt.Sprintf(`{"name":%q}`, strings.Repeat("é", 201)), payment.FieldInvalidString},
	} {
		p := problem(t, e.post(e.a.key, "/v1/sellers", fmt.Sprintf("bad-%d", i), tc.body), 400, payment.CodeValidationFailed)
		if !hasFieldError(p, "name", tc.code) {
			t.Errorf("%s: %+v, want name/%s", tc.body, p.Errors, tc.code)
		}
	}
	after := e.counts()
	if after["sellers"] != before["sellers"] || after["idempotency_keys"] != before["idempotency_keys"]+4 {
		t.Fatalf("rejected sellers changed rows: %v → %v", before, after)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	ctx := context.Background()
	unknown := "pp_test_" + strings.Repeat("A", 43)
	cases := map[string]map[string]string{
		"missing":         {"Authorization": ""},
		"basic scheme":    {"Authorization": "Basic " + e.a.key},
		"no scheme":       {"Authorization": e.a.key},
		"malformed key":   {"Authorization": "Bearer pp_test_short"},
		"bad characters":  {"Authorization": "Bearer pp_test_" + strings.Repeat("-", 43)},
		"live prefix":     {"Authorization": "Bearer pp_live_" + e.a.key[len("pp_test_"):]},
		"unknown key":     {"Authorization": "Bearer " + unknown},
		"trailing space":  {"Authorization": "Bearer " + e.a.key + " x"},
		"key of a secret": {"Authorization": "Bearer " + fmt.Sprintf("%x", sha256.Sum256([]byte(e.a.key)))},
	}
	var first []byte
	for name, hdr := range cases {
		for _, req := range []struct{ method, path string }{{"GET", "/v1/checkouts"}, {"POST", "/v1/sellers"}} {
			h := map[string]string{"Idempotency-Key": "k-" + name}
			for k, v := range hdr {
				h[k] = v
			}
			var body []byte
			if req.method == "POST" {
				body = []byte(`{"name":"x"}`)
			}
			r := e.request(req.method, req.path, "", body, h)
			p := problem(t, r, http.StatusUnauthorized, payment.CodeUnauthorized)
			if p.Detail != "" || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: %+v %v", name, p, r.header)
			}
			if first == nil {
				first = r.body
			} else if !bytes.Equal(first, r.body) {
				t.Errorf("%s: 401 body %s differs from %s", name, r.body, first)
			}
		}
	}
	if c := e.counts(); c["sellers"]+c["idempotency_keys"] != 0 {
		t.Fatalf("unauthenticated requests wrote rows: %v", c)
	}
	// The scheme is case-insensitive (RFC 9110).
	if r := e.request("GET", "/v1/checkouts", "", nil, map[string]string{"Authorization": "bearer " + e.a.key}); r.status != 200 {
		t.Fatalf("lower-case scheme: %d %s", r.status, r.body)
	}

	// A second key works until it is revoked, from the next request on.
	k2, secret, err := payment.CreateAPIKey(ctx, e.pool, e.a.id)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.get(secret, "/v1/checkouts"); r.status != http.StatusOK {
		t.Fatalf("new key: %d %s", r.status, r.body)
	}
	revoked, err := payment.RevokeAPIKey(ctx, e.pool, k2.ID)
	if err != nil || revoked.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", revoked, err)
	}
	if r := e.get(secret, "/v1/checkouts"); !bytes.Equal(problemBody(t, r, http.StatusUnauthorized), first) {
		t.Fatalf("revoked key: %d %s", r.status, r.body)
	}
	if r := e.get(e.a.key, "/v1/checkouts"); r.status != http.StatusOK {
		t.Fatalf("the first key must still work: %d", r.status)
	}
}

func problemBody(t *testing.T, r apiResp, status int) []byte {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r.body
}

// TestTenantIsolation is S1: merchant A sees none of B's objects, and cannot
// tell them from objects that do not exist.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	sa, sb := e.seller(e.a, "a's"), e.seller(e.b, "b's")
	ca := decode[payment.Checkout](t, e.post(e.a.key, "/v1/checkouts", "k", checkoutBody("USD", map[uuid.UUID]int64{sa: 100})), http.StatusCreated)
	cb := decode[payment.Checkout](t, e.post(e.b.key, "/v1/checkouts", "k", checkoutBody("USD", map[uuid.UUID]int64{sb: 200})), http.StatusCreated)

	notFound := problemBody(t, e.get(e.a.key, "/v1/checkouts/"+uuid.NewString()), http.StatusNotFound)
	problem(t, e.get(e.a.key, "/v1/checkouts/"+uuid.NewString()), http.StatusNotFound, payment.CodeNotFound)
	for _, path := range []string{
		"/v1/sellers/" + sb.String(), "/v1/checkouts/" + cb.ID.String(), "/v1/payment_orders/" + cb.Orders[0].ID.String(),
		"/v1/sellers/" + uuid.NewString(), "/v1/payment_orders/" + uuid.NewString(),
		"/v1/sellers/not-a-uuid", "/v1/checkouts/" + strings.ReplaceAll(cb.ID.String(), "-", ""), "/v1/checkouts/{" + cb.ID.String() + "}",
	} {
		if r := e.get(e.a.key, path); !bytes.Equal(problemBody(t, r, http.StatusNotFound), notFound) {
			t.Errorf("GET %s as A: %d %s, want the same 404 as an unknown id", path, r.status, r.body)
		}
	}
	// B's own objects are there for B.
	for _, path := range []string{"/v1/sellers/" + sb.String(), "/v1/checkouts/" + cb.ID.String(), "/v1/payment_orders/" + cb.Orders[0].ID.String()} {
		if r := e.get(e.b.key, path); r.status != http.StatusOK {
			t.Errorf("GET %s as B: %d", path, r.status)
		}
	}
	// Lists never show another merchant's rows.
	la := decode[payment.CheckoutList](t, e.get(e.a.key, "/v1/checkouts"), http.StatusOK)
	if len(la.Data) != 1 || la.Data[0].ID != ca.ID || la.HasMore {
		t.Fatalf("A's list %+v", la)
	}
	// A checkout naming B's seller is refused exactly like one naming an
	// unknown seller, and writes nothing.
	before := e.counts()
	pb := problem(t, e.post(e.a.key, "/v1/checkouts", "k2", checkoutBody("USD", map[uuid.UUID]int64{sb: 100})), 400, payment.CodeValidationFailed)
	pu := problem(t, e.post(e.a.key, "/v1/checkouts", "k3", checkoutBody("USD", map[uuid.UUID]int64{uuid.New(): 100})), 400, payment.CodeValidationFailed)
	if !reflect.DeepEqual(pb, pu) || !hasFieldError(pb, "orders[0].seller_id", payment.FieldSellerNotFound) {
		t.Fatalf("B's seller: %+v; unknown seller: %+v", pb, pu)
	}
	after := e.counts()
	for _, tb := range []string{"checkouts", "payment_orders", "outbox", "status_transitions"} {
		if after[tb] != before[tb] {
			t.Fatalf("%s changed: %v → %v", tb, before, after)
		}
	}
	// A's idempotency keys are A's: B used "k" too and got its own checkout.
	if ca.ID == cb.ID {
		t.Fatal("two merchants' keys collided")
	}
	// B's checkout id is not a usable cursor for A.
	pc := problem(t, e.get(e.a.key, "/v1/checkouts?starting_after="+cb.ID.String()), 400, payment.CodeInvalidParameter)
	pr := problem(t, e.get(e.a.key, "/v1/checkouts?starting_after="+uuid.NewString()), 400, payment.CodeInvalidParameter)
	if !reflect.DeepEqual(pc, pr) {
		t.Fatalf("cursor of B %+v vs unknown %+v", pc, pr)
	}
}

func TestListCheckouts(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	s := e.seller(e.a, "s")
	var created []uuid.UUID
	for i := range 5 {
		co := decode[payment.Checkout](t, e.post(e.a.key, "/v1/checkouts", fmt.Sprint("k", i),
			checkoutBody("USD", map[uuid.UUID]int64{s: int64(100 + i)})), http.StatusCreated)
		created = append(created, co.ID)
	}
	slices.Reverse(created) // newest first
	var seen []uuid.UUID
	path := "/v1/checkouts?limit=2"
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		l := decode[payment.CheckoutList](t, e.get(e.a.key, path), http.StatusOK)
		for _, c := range l.Data {
			if len(c.Orders) != 1 || c.Orders[0].SellerID != s {
				t.Fatalf("listed checkout without its order: %+v", c)
			}
			seen = append(seen, c.ID)
		}
		if !l.HasMore {
			break
		}
		path = "/v1/checkouts?limit=2&starting_after=" + l.Data[len(l.Data)-1].ID.String()
	}
	if !slices.Equal(seen, created) {
		t.Fatalf("pages gave %v, want %v", seen, created)
	}
	if l := decode[payment.CheckoutList](t, e.get(e.a.key, "/v1/checkouts"), http.StatusOK); len(l.Data) != 5 || l.HasMore {
		t.Fatalf("default page: %d, has_more %v", len(l.Data), l.HasMore)
	}
	if l := decode[payment.CheckoutList](t, e.get(e.a.key, "/v1/checkouts?limit=100"), http.StatusOK); len(l.Data) != 5 {
		t.Fatalf("limit=100: %d", len(l.Data))
	}
	if l := decode[payment.CheckoutList](t, e.get(e.b.key, "/v1/checkouts"), http.StatusOK); len(l.Data) != 0 || l.Data == nil {
		t.Fatalf("B's list %+v", l)
	}
	for _, q := range []string{"limit=101", "limit=100000", "limit=0", "limit=-1", "limit=abc", "limit=", "limit=1&limit=2",
		"starting_after=nope", "page=2", "limit=1.5"} {
		p := problem(t, e.get(e.a.key, "/v1/checkouts?"+q), http.StatusBadRequest, payment.CodeInvalidParameter)
		if len(p.Errors) == 0 {
			t.Errorf("%s: no field errors: %+v", q, p)
		}
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	r := e.request(http.MethodDelete, "/v1/checkouts", e.a.key, nil, nil)
	problem(t, r, http.StatusMethodNotAllowed, payment.CodeMethodNotAllowed)
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Fatalf("Allow %q", allow)
	}
	for _, path := range []string{"/", "/v1/nope", "/v1/checkouts/", "/v2/checkouts", "/v1/checkouts/" + uuid.NewString() + "/x"} {
		problem(t, e.get(e.a.key, path), http.StatusNotFound, payment.CodeNotFound)
	}
	if r := e.get(e.a.key, "/v1/checkouts"); r.header.Get("Request-Id") == "" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", r.header)
	}
	if r := e.get(e.a.key, "/v1/sellers/"+uuid.NewString()+"?x=1"); r.status != http.StatusBadRequest {
		t.Fatalf("unknown query parameter on GET: %d", r.status)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.DB(t)
	for _, cfg := range []payment.Config{
		{IdempotencyTTL: time.Second},
		{SweepBatch: -1},
		{SweepBatch: 1_000_000},
		{ReturnURLAllowedHosts: []string{"Shop.Example"}},
		{ReturnURLAllowedHosts: []string{"shop.example:443"}},
		{RequestTimeout: -time.Second},
	} {
		if _, err := payment.New(cfg, pool, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := payment.New(payment.Config{}, nil, nil); err == nil {
		t.Error("New without a pool accepted")
	}
}

var keyRE = regexp.MustCompile(`^pp_test_[0-9A-Za-z]{43}$`)

func TestCreateMerchantStoresOnlyTheKeyHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Migrated(t, payment.Schema())
	m, key, err := payment.CreateMerchant(ctx, pool, "Acme", 275)
	if err != nil {
		t.Fatal(err)
	}
	if !keyRE.MatchString(key) || m.Name != "Acme" || m.FeeBps != 275 || m.ID == uuid.Nil {
		t.Fatalf("merchant %+v key %q", m, key)
	}
	sum := sha256.Sum256([]byte(key))
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payment.api_keys WHERE merchant_id = $1 AND key_hash = $2 AND prefix = $3`,
		m.ID, sum[:], key[:12]).Scan(&n); err != nil || n != 1 {
		t.Fatalf("api key row: %d %v", n, err)
	}
	// The secret part appears nowhere in the database.
	secret := key[12:]
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payment.api_keys k WHERE position($1 in k::text) > 0
OR position($1 in encode(k.key_hash, 'escape')) > 0`, secret).Scan(&n); err != nil || n != 0 {
		t.Fatalf("secret found in %d rows (%v)", n, err)
	}
	_, key2, err := payment.CreateMerchant(ctx, pool, "Other", 0)
	if err != nil || key2 == key {
		t.Fatalf("second merchant: %v (same key: %v)", err, key2 == key)
	}
	keys, err := payment.ListAPIKeys(ctx, pool, m.ID)
	if err != nil || len(keys) != 1 || keys[0].Prefix != key[:12] || keys[0].RevokedAt != nil {
		t.Fatalf("keys %+v %v", keys, err)
	}
	for _, bad := range []struct {
		name string
		fee  int
	}{{"", 100}, {"  ", 100}, {"x", -1}, {"x", 10_001}, {strings.Repeat("x", 201), 1}} {
		if _, _, err := payment.CreateMerchant(ctx, pool, bad.name, bad.fee); err == nil {
			t.Errorf("CreateMerchant(%q, %d) accepted", bad.name, bad.fee)
		}
	}
	if _, _, err := payment.CreateAPIKey(ctx, pool, uuid.New()); err == nil {
		t.Error("key for an unknown merchant accepted")
	}
	if _, err := payment.RevokeAPIKey(ctx, pool, uuid.New()); err == nil {
		t.Error("revoking an unknown key succeeded")
	}
}
