package payment_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/payment"
)

// TestCheckoutRejectsBadInput sends every class of bad input (S3 mass
// assignment, S5 size and depth, S10 return URLs, S11 money) and checks the
// status, the problem type, the specific field code, and that nothing but
// the key's stored answer was written: no checkout, order, transition or
// event. Requests refused before their Idempotency-Key could be claimed
// (415, 413, a bad key) store nothing at all.
func TestCheckoutRejectsBadInput(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	s1, s2 := e.seller(e.a, "s1"), e.seller(e.a, "s2")
	sb := e.seller(e.b, "b's")
	// valid builds a correct hosted checkout body with fields replaced or
	// added (each entry is `"name": raw JSON`) or removed (`-name`).
	valid := func(over ...string) string {
		fields := []string{`"buyer_id":"buyer-1"`, `"currency":"USD"`, `"mode":"hosted"`, `"return_url":"https://shop.example/r"`,
			fmt.Sprintf(`"orders":[{"seller_id":%q,"amount_minor":1000}]`, s1)}
		for _, o := range over {
			if drop, ok := strings.CutPrefix(o, "-"); ok {
				fields = slices.DeleteFunc(fields, func(f string) bool { return strings.HasPrefix(f, `"`+drop+`":`) })
				continue
			}
			name := o[:strings.Index(o, ":")]
			replaced := false
			for i, f := range fields {
				if strings.HasPrefix(f, name+":") {
					fields[i], replaced = o, true
				}
			}
			if !replaced {
				fields = append(fields, o)
			}
		}
		return "{" + strings.Join(fields, ",") + "}"
	}
	order := func(amount string) string {
		return fmt.Sprintf(`"orders":[{"seller_id":%q,"amount_minor":%s}]`, s1, amount)
	}
	without := func(field string) string { return valid("-" + field) }
	nested := strings.Repeat("[", 40) + strings.Repeat("]", 40)
	many := make([]string, payment.MaxOrdersPerCheckout+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"seller_id":%q,"amount_minor":1}`, uuid.New())
	}

	type tc struct {
		name      string
		body      string
		hdr       map[string]string
		status    int
		code      payment.Code
		field     string // expected errors[].field ("" = any)
		fieldCode string // expected errors[].code ("" = none required)
		detail    string // substring of the detail or a field detail
		stored    bool   // the answer is stored under the key
	}
	cases := []tc{
		// S3: mass assignment and unknown fields.
		{name: "status", body: valid(`"status":"succeeded"`), status: 400, code: payment.CodeUnknownField, field: "status", fieldCode: payment.FieldUnknownField, stored: true},
		{name: "merchant_id", body: valid(fmt.Sprintf(`"merchant_id":%q`, e.b.id)), status: 400, code: payment.CodeUnknownField, field: "merchant_id", stored: true},
		{name: "amount_captured", body: valid(`"amount_captured":1000`), status: 400, code: payment.CodeUnknownField, field: "amount_captured", stored: true},
		{name: "fee", body: valid(`"fee":0`), status: 400, code: payment.CodeUnknownField, field: "fee", stored: true},
		{name: "order fee", body: valid(fmt.Sprintf(`"orders":[{"seller_id":%q,"amount_minor":1000,"fee_minor":0}]`, s1)), status: 400, code: payment.CodeUnknownField, field: "fee_minor", stored: true},
		{name: "metadata", body: valid(`"metadata":{"a":"b"}`), status: 400, code: payment.CodeUnknownField, field: "metadata", stored: true},
		{name: "case variant", body: valid(`"Currency":"EUR"`), status: 400, code: payment.CodeUnknownField, field: "Currency", stored: true},
		// The same field twice, where encoding/json would silently keep the last.
		{name: "duplicate key", body: `{"currency":"EUR",` + valid()[1:], status: 400, code: payment.CodeInvalidJSON, field: "currency", fieldCode: payment.FieldDuplicateField, stored: true},
		// Malformed documents.
		{name: "syntax", body: `{"buyer_id":`, status: 400, code: payment.CodeInvalidJSON, stored: true},
		{name: "trailing object", body: valid() + `{}`, status: 400, code: payment.CodeInvalidJSON, detail: "after the JSON object", stored: true},
		{name: "trailing garbage", body: valid() + ` x`, status: 400, code: payment.CodeInvalidJSON, stored: true},
		{name: "array", body: `[]`, status: 400, code: payment.CodeInvalidJSON, stored: true},
		{name: "empty", body: ``, status: 400, code: payment.CodeInvalidJSON, stored: true},
		{name: "null", body: `null`, status: 400, code: payment.CodeInvalidJSON, stored: true},
		{name: "too deep", body: valid(`"x":` + nested), status: 400, code: payment.CodeInvalidJSON, detail: "deeper", stored: true},
		{name: "invalid utf-8", body: valid(`"buyer_id":"b` + "\xff" + `"`), status: 400, code: payment.CodeInvalidJSON, detail: "UTF-8", stored: true},
		{name: "wrong type", body: valid(`"buyer_id":5`), status: 400, code: payment.CodeValidationFailed, field: "buyer_id", fieldCode: payment.FieldInvalidType, stored: true},
		{name: "orders object", body: valid(`"orders":{}`), status: 400, code: payment.CodeValidationFailed, field: "orders", fieldCode: payment.FieldInvalidType, stored: true},
		// S11: amounts.
		{name: "amount 0", body: valid(order("0")), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountNotPositive, stored: true},
		{name: "amount -1", body: valid(order("-1")), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountNotPositive, stored: true},
		{name: "amount 10.5", body: valid(order("10.5")), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountNotInteger, stored: true},
		{name: "amount 10.0", body: valid(order("10.0")), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountNotInteger, stored: true},
		{name: `amount "100"`, body: valid(order(`"100"`)), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountNotInteger, stored: true},
		{name: "amount 1e3", body: valid(order("1e3")), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountNotInteger, stored: true},
		{name: "amount 2^63", body: valid(order("9223372036854775808")), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountTooLarge, stored: true},
		{name: "amount -2^63-1", body: valid(order("-9223372036854775809")), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountNotPositive, stored: true},
		{name: "amount > max", body: valid(order(fmt.Sprint(money.MaxAmount + 1))), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountTooLarge, stored: true},
		{name: "amount null", body: valid(order("null")), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldRequired, stored: true},
		{name: "amount true", body: valid(order("true")), status: 400, code: payment.CodeValidationFailed, field: "orders[0].amount_minor", fieldCode: payment.FieldAmountNotInteger, stored: true},
		{name: "total > max", body: valid(fmt.Sprintf(`"orders":[{"seller_id":%q,"amount_minor":%d},{"seller_id":%q,"amount_minor":%d}]`,
			s1, money.MaxAmount, s2, money.MaxAmount)), status: 400, code: payment.CodeValidationFailed, field: "orders", fieldCode: payment.FieldTotalTooLarge, stored: true},
		// S11: currencies.
		{name: "currency usd", body: valid(`"currency":"usd"`), status: 400, code: payment.CodeValidationFailed, field: "currency", fieldCode: payment.FieldCurrencyNotUpperCase, detail: `"USD"`, stored: true},
		{name: "currency XXX", body: valid(`"currency":"XXX"`), status: 400, code: payment.CodeValidationFailed, field: "currency", fieldCode: payment.FieldCurrencyUnknown, stored: true},
		{name: "currency ABC", body: valid(`"currency":"ABC"`), status: 400, code: payment.CodeValidationFailed, field: "currency", fieldCode: payment.FieldCurrencyUnknown, stored: true},
		{name: "currency abc", body: valid(`"currency":"abc"`), status: 400, code: payment.CodeValidationFailed, field: "currency", fieldCode: payment.FieldCurrencyUnknown, stored: true},
		{name: "currency US", body: valid(`"currency":"US"`), status: 400, code: payment.CodeValidationFailed, field: "currency", fieldCode: payment.FieldCurrencyUnknown, stored: true},
		{name: "currency missing", body: without("currency"), status: 400, code: payment.CodeValidationFailed, field: "currency", fieldCode: payment.FieldRequired, stored: true},
		// Other fields.
		{name: "buyer missing", body: without("buyer_id"), status: 400, code: payment.CodeValidationFailed, field: "buyer_id", fieldCode: payment.FieldRequired, stored: true},
		{name: "buyer control", body: valid(`"buyer_id":"a\u0000b"`), status: 400, code: payment.CodeValidationFailed, field: "buyer_id", fieldCode: payment.FieldInvalidString, stored: true},
		{name: "mode card", body: valid(`"mode":"card"`), status: 400, code: payment.CodeValidationFailed, field: "mode", fieldCode: payment.FieldInvalidMode, stored: true},
		{name: "mode Hosted", body: valid(`"mode":"Hosted"`), status: 400, code: payment.CodeValidationFailed, field: "mode", fieldCode: payment.FieldInvalidMode, stored: true},
		{name: "hosted with method", body: valid(`"payment_method":"pm_card_visa"`), status: 400, code: payment.CodeValidationFailed, field: "payment_method", fieldCode: payment.FieldPaymentMethodNotAllowed, stored: true},
		{name: "direct without method", body: valid(`"mode":"direct"`), status: 400, code: payment.CodeValidationFailed, field: "payment_method", fieldCode: payment.FieldPaymentMethodRequired, stored: true},
		{name: "direct bad method", body: valid(`"mode":"direct"`, `"payment_method":"pm card"`), status: 400, code: payment.CodeValidationFailed, field: "payment_method", fieldCode: payment.FieldPaymentMethodInvalid, stored: true},
		// S10: return URLs.
		{name: "return url missing", body: without("return_url"), status: 400, code: payment.CodeValidationFailed, field: "return_url", fieldCode: payment.FieldReturnURLRequired, stored: true},
		{name: "return url http", body: valid(`"return_url":"http://shop.example/r"`), status: 400, code: payment.CodeValidationFailed, field: "return_url", fieldCode: payment.FieldReturnURLInsecure, stored: true},
		{name: "return url http loopback alias", body: valid(`"return_url":"http://127.0.0.2/r"`), status: 400, code: payment.CodeValidationFailed, field: "return_url", fieldCode: payment.FieldReturnURLInsecure, stored: true},
		{name: "return url javascript", body: valid(`"return_url":"javascript:alert(1)"`), status: 400, code: payment.CodeValidationFailed, field: "return_url", fieldCode: payment.FieldReturnURLInvalid, stored: true},
		{name: "return url relative", body: valid(`"return_url":"/r"`), status: 400, code: payment.CodeValidationFailed, field: "return_url", fieldCode: payment.FieldReturnURLInvalid, stored: true},
		{name: "return url scheme-relative", body: valid(`"return_url":"//evil.example/r"`), status: 400, code: payment.CodeValidationFailed, field: "return_url", fieldCode: payment.FieldReturnURLInvalid, stored: true},
		{name: "return url credentials", body: valid(`"return_url":"https://shop.example@evil.example/r"`), status: 400, code: payment.CodeValidationFailed, field: "return_url", fieldCode: payment.FieldReturnURLInvalid, stored: true},
		{name: "return url ftp", body: valid(`"return_url":"ftp://shop.example/r"`), status: 400, code: payment.CodeValidationFailed, field: "return_url", fieldCode: payment.FieldReturnURLInvalid, stored: true},
		{name: "return url too long", body: valid(`"return_url":"https://shop.example/` + strings.Repeat("a", 2048) + `"`), status: 400, code: payment.CodeValidationFailed, field: "return_url", fieldCode: payment.FieldReturnURLInvalid, stored: true},
		// Orders.
		{name: "orders missing", body: without("orders"), status: 400, code: payment.CodeValidationFailed, field: "orders", fieldCode: payment.FieldRequired, stored: true},
		{name: "orders empty", body: valid(`"orders":[]`), status: 400, code: payment.CodeValidationFailed, field: "orders", fieldCode: payment.FieldTooFewItems, stored: true},
		{name: "51 orders", body: valid(`"orders":[` + strings.Join(many, ",") + `]`), status: 400, code: payment.CodeValidationFailed, field: "orders", fieldCode: payment.FieldTooManyItems, stored: true},
		{name: "seller not uuid", body: valid(`"orders":[{"seller_id":"s1","amount_minor":5}]`), status: 400, code: payment.CodeValidationFailed, field: "orders[0].seller_id", fieldCode: payment.FieldInvalidUUID, stored: true},
		{name: "seller unknown", body: valid(fmt.Sprintf(`"orders":[{"seller_id":%q,"amount_minor":5}]`, uuid.New())), status: 400, code: payment.CodeValidationFailed, field: "orders[0].seller_id", fieldCode: payment.FieldSellerNotFound, stored: true},
		{name: "seller of B", body: valid(fmt.Sprintf(`"orders":[{"seller_id":%q,"amount_minor":5},{"seller_id":%q,"amount_minor":5}]`, s1, sb)), status: 400, code: payment.CodeValidationFailed, field: "orders[1].seller_id", fieldCode: payment.FieldSellerNotFound, stored: true},
		{name: "seller twice", body: valid(fmt.Sprintf(`"orders":[{"seller_id":%q,"amount_minor":5},{"seller_id":%q,"amount_minor":5}]`, s1, s1)), status: 400, code: payment.CodeValidationFailed, field: "orders[1].seller_id", fieldCode: payment.FieldDuplicateSeller, stored: true},
		// Refused before the key is claimed: nothing stored.
		{name: "text/plain", body: valid(), hdr: map[string]string{"Content-Type": "text/plain"}, status: 415, code: payment.CodeUnsupportedMediaType},
		{name: "no content type", body: valid(), hdr: map[string]string{"Content-Type": ""}, status: 415, code: payment.CodeUnsupportedMediaType},
		{name: "latin1", body: valid(), hdr: map[string]string{"Content-Type": "application/json; charset=latin1"}, status: 415, code: payment.CodeUnsupportedMediaType},
		{name: "json-patch", body: valid(), hdr: map[string]string{"Content-Type": "application/json-patch+json"}, status: 415, code: payment.CodeUnsupportedMediaType},
		{name: "body > 64 KiB", body: valid(`"buyer_id":"` + strings.Repeat("b", payment.MaxBodyBytes) + `"`), status: 413, code: payment.CodeRequestTooLarge},
		{name: "no idempotency key", body: valid(), hdr: map[string]string{"Idempotency-Key": ""}, status: 400, code: payment.CodeIdempotencyKeyMissing},
		{name: "key too long", body: valid(), hdr: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, status: 400, code: payment.CodeIdempotencyKeyInvalid},
		{name: "key not ascii", body: valid(), hdr: map[string]string{"Idempotency-Key": "clé"}, status: 400, code: payment.CodeIdempotencyKeyInvalid},
		{name: "query on post", body: valid(), hdr: map[string]string{"X-Path": "/v1/checkouts?mode=direct"}, status: 400, code: payment.CodeInvalidParameter},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.counts()
			hdr := map[string]string{"Idempotency-Key": fmt.Sprintf("bad-%d", i)}
			path := "/v1/checkouts"
			for k, v := range c.hdr {
				if k == "X-Path" {
					path = v
					continue
				}
				hdr[k] = v
			}
			r := e.request(http.MethodPost, path, e.a.key, []byte(c.body), hdr)
			p := problem(t, r, c.status, c.code)
			if c.fieldCode != "" && !hasFieldError(p, c.field, c.fieldCode) {
				t.Errorf("errors %+v, want %s/%s", p.Errors, c.field, c.fieldCode)
			}
			if c.detail != "" {
				all := p.Detail
				for _, fe := range p.Errors {
					all += " " + fe.Detail
				}
				if !strings.Contains(all, c.detail) {
					t.Errorf("details %q do not mention %q", all, c.detail)
				}
			}
			after := e.counts()
			for tb, n := range after {
				want := before[tb]
				if tb == "idempotency_keys" && c.stored {
					want++
				}
				if n != want {
					t.Errorf("table %s: %d rows, want %d", tb, n, want)
				}
			}
		})
	}
}

// TestReturnURLAllowList is S10 with an allow list configured: only its
// hosts are accepted, whatever the scheme's other rules allow.
func TestReturnURLAllowList(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{ReturnURLAllowedHosts: []string{"shop.example", "localhost"}})
	s := e.seller(e.a, "s")
	body := func(u string) string {
		return fmt.Sprintf(`{"buyer_id":"b","currency":"EUR","mode":"hosted","return_url":%q,"orders":[{"seller_id":%q,"amount_minor":100}]}`, u, s)
	}
	for i, u := range []string{"https://evil.example/r", "https://shop.example.evil.example/r", "https://evil.example/?https://shop.example/",
		"https://sub.shop.example/r", "http://127.0.0.1/r"} {
		p := problem(t, e.post(e.a.key, "/v1/checkouts", fmt.Sprint("bad-", i), body(u)), 400, payment.CodeValidationFailed)
		if !hasFieldError(p, "return_url", payment.FieldReturnURLHostNotAllowed) {
			t.Errorf("%s: %+v", u, p.Errors)
		}
	}
	if n := e.count(`SELECT count(*) FROM payment.checkouts`); n != 0 {
		t.Fatalf("%d checkouts after refused return URLs", n)
	}
	for i, u := range []string{"https://shop.example/ok", "https://SHOP.example:8443/ok?x=1", "http://localhost:8080/back"} {
		decode[payment.Checkout](t, e.post(e.a.key, "/v1/checkouts", fmt.Sprint("ok-", i), body(u)), http.StatusCreated)
	}
}

// TestBodyLimitWithoutContentLength: a chunked body has no length to check
// up front; reading stops at the limit.
func TestBodyLimitWithoutContentLength(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	body := io.MultiReader(strings.NewReader(`{"name":"`), strings.NewReader(strings.Repeat("n", 1<<20)), strings.NewReader(`"}`))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/v1/sellers", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.a.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "big")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if req.ContentLength > 0 {
		t.Fatalf("the request carried a length (%d); the test needs a chunked body", req.ContentLength)
	}
	problem(t, apiResp{status: resp.StatusCode, header: resp.Header, body: b}, http.StatusRequestEntityTooLarge, payment.CodeRequestTooLarge)
	if c := e.counts(); c["sellers"]+c["idempotency_keys"] != 0 {
		t.Fatalf("rows written: %v", c)
	}
}
