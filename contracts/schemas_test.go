package contracts_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
)

// stringConsts returns every string constant declared in events.go, parsed
// from the source so that a subject, status, kind or cause added there
// without a schema, a sample or an AsyncAPI entry fails these tests.
func stringConsts(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[name.Name] = v
				}
			}
		}
	}
	return out
}

// subjects returns the Subject* constants of events.go by name.
func subjects(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, v := range stringConsts(t) {
		if strings.HasPrefix(name, "Subject") {
			out[name] = v
		}
	}
	if len(out) == 0 {
		t.Fatal("no Subject* constants found in events.go")
	}
	return out
}

// constValues returns the sorted values of the events.go constants named.
func constValues(t *testing.T, match func(name string) bool) []string {
	t.Helper()
	var out []string
	for name, v := range stringConsts(t) {
		if match(name) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// ids are minted the way the services mint them.
func newID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// sample is a realistic event as a service builds it, with the Go type the
// service marshals.
type sample struct {
	name  string
	event any
}

// samples returns, per subject, events built as the producing service builds
// them (see services/payment, executor, ledger and wallet): ids from
// uuid.NewV7, fees from money.Fee, times in UTC, optional fields both set and
// left out.
func samples(t *testing.T) map[string][]sample {
	t.Helper()
	checkout, merchant := newID(t), newID(t)
	sellerA, sellerB := newID(t), newID(t)
	orderA, orderB := newID(t), newID(t)
	now := time.Now().UTC()
	fee := func(amount int64, bps int) int64 {
		f, err := money.Fee(amount, bps)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	feeA, feeB := fee(10_000, 300), fee(2_550, 300)
	orders := []contracts.OrderSummary{
		{PaymentOrderID: orderA, SellerID: sellerA, AmountMinor: 10_000, FeeMinor: feeA, NetMinor: 10_000 - feeA},
		{PaymentOrderID: orderB, SellerID: sellerB, AmountMinor: 2_550, FeeMinor: feeB, NetMinor: 2_550 - feeB},
	}
	registered := contracts.CheckoutRegistered{
		CheckoutID: checkout, MerchantID: merchant, PSPPaymentID: "pay_3KqZ8dWmP0", PSPStatus: contracts.PSPStatusRequiresAction,
		AmountMinor: 12_550, Currency: "USD", RedirectURL: "http://127.0.0.1:8081/pay/pay_3KqZ8dWmP0", RegisteredAt: now,
	}
	directFailed := registered
	directFailed.PSPStatus, directFailed.RedirectURL, directFailed.FailureCode = contracts.PSPStatusFailed, "", "card_declined"
	resolved := contracts.CheckoutResolved(registered)
	resolved.PSPStatus, resolved.RedirectURL = contracts.PSPStatusSucceeded, ""
	entryOf := func(net, fee int64) contracts.LedgerEntryPosted {
		e := contracts.LedgerEntryPosted{
			EntryID:    uuid.NewSHA1(uuid.MustParse("6f1d8a52-3c1e-4f0e-9a57-2f8f1a7e0b3d"), []byte("order_captured:"+orderA)).String(),
			ExternalID: contracts.EntryOrderCaptured + ":" + orderA, Kind: contracts.EntryOrderCaptured,
			MerchantID: merchant, PaymentOrderID: orderA, Currency: "USD", PostedAt: now.Truncate(time.Microsecond),
			Postings: []contracts.Posting{{Account: contracts.AccountPSPReceivable, Direction: contracts.Debit, AmountMinor: net + fee}},
		}
		if net > 0 {
			e.Postings = append(e.Postings, contracts.Posting{Account: contracts.SellerPayable(sellerA), Direction: contracts.Credit, AmountMinor: net})
		}
		if fee > 0 {
			e.Postings = append(e.Postings, contracts.Posting{Account: contracts.AccountPlatformFeeRevenue, Direction: contracts.Credit, AmountMinor: fee})
		}
		return e
	}
	return map[string][]sample{
		contracts.SubjectCheckoutCreated: {
			{"hosted", contracts.CheckoutCreated{
				CheckoutID: checkout, MerchantID: merchant, BuyerID: "buyer-4711", Currency: "USD", AmountMinor: 12_550,
				Mode: contracts.ModeHosted, ReturnURL: "https://shop.example/checkout/done?ref=a%20b", Orders: orders, CreatedAt: now,
			}},
			{"direct, one order, zero-decimal currency, 0 bps fee", contracts.CheckoutCreated{
				CheckoutID: checkout, MerchantID: merchant, BuyerID: "Ünïcødé buyer", Currency: "JPY", AmountMinor: money.MaxAmount,
				Mode: contracts.ModeDirect, PaymentMethod: "pm_card_visa",
				Orders:    []contracts.OrderSummary{{PaymentOrderID: orderA, SellerID: sellerA, AmountMinor: money.MaxAmount, FeeMinor: 0, NetMinor: money.MaxAmount}},
				CreatedAt: now,
			}},
			{"direct with return_url, 100% fee", contracts.CheckoutCreated{
				CheckoutID: checkout, MerchantID: merchant, BuyerID: "b", Currency: "EUR", AmountMinor: 1,
				Mode: contracts.ModeDirect, PaymentMethod: "pm_card_declined", ReturnURL: "http://localhost:3000/done",
				Orders:    []contracts.OrderSummary{{PaymentOrderID: orderA, SellerID: sellerA, AmountMinor: 1, FeeMinor: fee(1, 10_000), NetMinor: 0}},
				CreatedAt: now,
			}},
		},
		contracts.SubjectCheckoutRegistered: {
			{"hosted, waiting for the buyer", registered},
			{"direct, declined", directFailed},
		},
		contracts.SubjectCheckoutResolved: {
			{"succeeded", resolved},
		},
		contracts.SubjectCheckoutRejected: {
			{"rejected", contracts.CheckoutRejected{CheckoutID: checkout, MerchantID: merchant, Code: "currency_not_supported",
				Message: "The currency is not enabled for this account.", RejectedAt: now}},
		},
		contracts.SubjectCheckoutCompleted: {
			{"completed", contracts.CheckoutCompleted{CheckoutID: checkout, MerchantID: merchant, CompletedAt: now}},
		},
		contracts.SubjectOrderSucceeded: {
			{"succeeded", contracts.OrderSucceeded{PaymentOrderID: orderA, CheckoutID: checkout, MerchantID: merchant, SellerID: sellerA,
				Currency: "USD", AmountMinor: 10_000, FeeMinor: feeA, NetMinor: 10_000 - feeA, PSPPaymentID: "pay_3KqZ8dWmP0", SucceededAt: now}},
		},
		contracts.SubjectOrderFailed: {
			{"rejected", contracts.OrderFailed{PaymentOrderID: orderB, CheckoutID: checkout, MerchantID: merchant, SellerID: sellerB,
				Currency: "USD", AmountMinor: 2_550, FailureCode: "psp_rejected:currency_not_supported", FailedAt: now}},
		},
		contracts.SubjectOrderCompleted: {
			{"completed", contracts.OrderCompleted{PaymentOrderID: orderA, CheckoutID: checkout, MerchantID: merchant, SellerID: sellerA, CompletedAt: now}},
		},
		contracts.SubjectLedgerEntryPosted: {
			{"order captured with fee", entryOf(10_000-feeA, feeA)},
			{"order captured without fee", entryOf(10_000, 0)},
		},
		contracts.SubjectWalletBalance: {
			{"order succeeded", contracts.WalletBalanceChanged{SellerID: sellerA, MerchantID: merchant, Currency: "USD",
				Cause: contracts.CauseOrderSucceeded, PaymentOrderID: orderA, DeltaPendingMinor: 10_000 - feeA,
				PendingMinor: 10_000 - feeA, Version: 1, ChangedAt: now}},
			{"owing the platform", contracts.WalletBalanceChanged{SellerID: sellerA, MerchantID: merchant, Currency: "USD",
				Cause: contracts.CauseOrderSucceeded, PaymentOrderID: orderB, DeltaPendingMinor: 0,
				PendingMinor: 9_700, AvailableMinor: -5_000, PaidOutMinor: 120_000, Version: 7, ChangedAt: now}},
		},
	}
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every subject in events.go has exactly one schema, and every schema
// belongs to a subject.
func TestEverySubjectHasASchema(t *testing.T) {
	t.Parallel()
	var want []string
	for _, s := range subjects(t) {
		want = append(want, contracts.TypeOf(s))
	}
	slices.Sort(want)
	if got := contracts.EventTypes(); !slices.Equal(got, want) {
		t.Fatalf("EventTypes() = %v\nsubjects of events.go give %v", got, want)
	}
	v, err := contracts.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Types(); !slices.Equal(got, want) {
		t.Fatalf("Validator.Types() = %v, want %v", got, want)
	}
}

// Each schema file is a draft 2020-12 schema whose $id names it.
func TestSchemaFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("schemas/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Schema string `json:"$schema"`
			ID     string `json:"$id"`
			Title  string `json:"title"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		base := filepath.Base(f)
		if doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema %q", f, doc.Schema)
		}
		if doc.ID != contracts.SchemaBaseURL+base {
			t.Errorf("%s: $id %q, want %q", f, doc.ID, contracts.SchemaBaseURL+base)
		}
		if base != "common.json" && doc.Title != strings.TrimSuffix(base, ".json") {
			t.Errorf("%s: title %q, want the ce-type", f, doc.Title)
		}
	}
}

// What the services marshal validates, and the schemas agree with the Go
// types field by field: same property names, and required exactly where the
// json tag has no omitempty.
func TestSamplesValidate(t *testing.T) {
	t.Parallel()
	all := samples(t)
	for name, subject := range subjects(t) {
		ss := all[subject]
		if len(ss) == 0 {
			t.Errorf("%s (%s): no sample event; add one to samples()", name, subject)
			continue
		}
		ceType := contracts.TypeOf(subject)
		for _, s := range ss {
			if err := contracts.ValidateEvent(ceType, marshal(t, s.event)); err != nil {
				t.Errorf("%s %s: %v", ceType, s.name, err)
			}
		}
		props, required := schemaFields(t, ceType)
		goProps, goRequired := jsonFields(reflect.TypeOf(ss[0].event))
		if !slices.Equal(props, goProps) {
			t.Errorf("%s: schema properties %v, Go %T fields %v", ceType, props, ss[0].event, goProps)
		}
		if !slices.Equal(required, goRequired) {
			t.Errorf("%s: schema requires %v, Go %T always emits %v", ceType, required, ss[0].event, goRequired)
		}
	}
}

// schemaFields returns the sorted top-level properties and required fields of
// a schema, following a root allOf $ref (resolved is registered's shape).
func schemaFields(t *testing.T, ceType string) (props, required []string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("schemas", ceType+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
		AllOf      []struct {
			Ref string `json:"$ref"`
		} `json:"allOf"`
		AdditionalProperties *bool `json:"additionalProperties"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.AdditionalProperties == nil {
		for _, a := range doc.AllOf {
			if a.Ref != "" {
				return schemaFields(t, strings.TrimSuffix(a.Ref, ".json"))
			}
		}
		t.Fatalf("%s: neither additionalProperties nor a root $ref", ceType)
	}
	if *doc.AdditionalProperties {
		t.Errorf("%s: additionalProperties must be false", ceType)
	}
	for p := range doc.Properties {
		props = append(props, p)
	}
	slices.Sort(props)
	required = slices.Clone(doc.Required)
	slices.Sort(required)
	return props, required
}

// jsonFields returns the sorted JSON names of a struct's fields and those
// encoding/json always emits (no omitempty).
func jsonFields(typ reflect.Type) (names, always []string) {
	for f := range typ.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
		if !slices.Contains(strings.Split(opts, ","), "omitempty") {
			always = append(always, name)
		}
	}
	slices.Sort(names)
	slices.Sort(always)
	return names, always
}

// mutation changes a decoded payload; the result must be refused.
type mutation struct {
	name string
	fn   func(m map[string]any)
}

func set(path string, v any) mutation {
	return mutation{fmt.Sprintf("%s = %v", path, v), func(m map[string]any) { setPath(m, path, v) }}
}

func del(path string) mutation {
	return mutation{"without " + path, func(m map[string]any) { setPath(m, path, nil) }}
}

// setPath sets (or with v == nil deletes) a value at a dotted path whose
// numeric segments index arrays, e.g. orders.0.amount_minor.
func setPath(m map[string]any, path string, v any) {
	keys := strings.Split(path, ".")
	var cur any = m
	for _, k := range keys[:len(keys)-1] {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[k]
		case []any:
			i, _ := strconv.Atoi(k)
			cur = c[i]
		}
	}
	last := keys[len(keys)-1]
	obj := cur.(map[string]any)
	if v == nil {
		delete(obj, last)
		return
	}
	obj[last] = v
}

// Mutated events are refused: each required field missing, an unknown
// field, ids that are not canonical UUIDs, lower-case currencies, amounts out
// of their bounds, unknown statuses, kinds and causes, malformed times, and
// the cross-field rules (mode, kind, cause).
func TestMutationsFail(t *testing.T) {
	t.Parallel()
	const notUUID, upperUUID, nilUUID = "ord_123", "0198C2A4-7B1F-7D01-A2B3-C4D5E6F7A8B9", "00000000-0000-0000-0000-000000000000"
	badTimes := []string{"2026-13-01T00:00:00Z", "yesterday", "2026-03-02T10:15:30+01:00", "2026-03-02 10:15:30Z"}
	common := func(fields ...string) []mutation {
		var ms []mutation
		for _, f := range fields {
			switch {
			case f == "currency":
				ms = append(ms, set(f, "usd"), set(f, "US"), set(f, "USDT"), set(f, 840.0))
			case strings.HasSuffix(f, "_at"):
				for _, bt := range badTimes {
					ms = append(ms, set(f, bt))
				}
			default: // an id
				ms = append(ms, set(f, notUUID), set(f, upperUUID), set(f, nilUUID), set(f, ""), set(f, 42.0))
			}
		}
		return ms
	}
	amounts := func(f string, min int64) []mutation {
		return []mutation{set(f, min-1), set(f, -1), set(f, money.MaxAmount+1), set(f, 10.5), set(f, "100")}
	}
	cases := map[string][]mutation{
		contracts.SubjectCheckoutCreated: slices.Concat(
			common("checkout_id", "merchant_id", "currency", "created_at", "orders.0.payment_order_id", "orders.1.seller_id"),
			amounts("amount_minor", 1), amounts("orders.0.amount_minor", 1), amounts("orders.0.fee_minor", 0), amounts("orders.1.net_minor", 0),
			[]mutation{
				set("mode", "card"), set("mode", "HOSTED"), set("buyer_id", ""), set("buyer_id", "a\nb"), set("buyer_id", strings.Repeat("x", 256)),
				set("orders", []any{}), set("orders.0.extra", true), del("orders.0.net_minor"),
				del("return_url"),                     // hosted needs one
				set("payment_method", "pm_card_visa"), // hosted takes none
				set("return_url", "/relative"), set("return_url", "ftp://shop.example/x"),
				set("return_url", "https://shop.example/"+strings.Repeat("p", 2048)),
			}),
		contracts.SubjectCheckoutRegistered: slices.Concat(
			common("checkout_id", "merchant_id", "currency", "registered_at"), amounts("amount_minor", 1),
			[]mutation{set("psp_status", "settled"), set("psp_status", "SUCCEEDED"), set("psp_payment_id", ""),
				set("redirect_url", "not a url"), set("failure_code", "")}),
		contracts.SubjectCheckoutResolved: slices.Concat(
			common("checkout_id", "merchant_id", "currency", "registered_at"), amounts("amount_minor", 1),
			[]mutation{set("psp_status", contracts.PSPStatusProcessing), set("psp_status", contracts.PSPStatusRequiresAction),
				set("psp_status", "settled")}),
		contracts.SubjectCheckoutRejected: slices.Concat(
			common("checkout_id", "merchant_id", "rejected_at"), []mutation{set("code", ""), set("message", "")}),
		contracts.SubjectCheckoutCompleted: common("checkout_id", "merchant_id", "completed_at"),
		contracts.SubjectOrderSucceeded: slices.Concat(
			common("payment_order_id", "checkout_id", "merchant_id", "seller_id", "currency", "succeeded_at"),
			amounts("amount_minor", 1), amounts("fee_minor", 0), amounts("net_minor", 0),
			[]mutation{set("psp_payment_id", "")}),
		contracts.SubjectOrderFailed: slices.Concat(
			common("payment_order_id", "checkout_id", "merchant_id", "seller_id", "currency", "failed_at"),
			amounts("amount_minor", 1), []mutation{set("failure_code", "")}),
		contracts.SubjectOrderCompleted: common("payment_order_id", "checkout_id", "merchant_id", "seller_id", "completed_at"),
		contracts.SubjectLedgerEntryPosted: slices.Concat(
			common("entry_id", "merchant_id", "payment_order_id", "currency", "posted_at"),
			[]mutation{
				set("kind", "refund"), set("kind", "ORDER_CAPTURED"), del("payment_order_id"),
				set("external_id", "order_captured:something-else"), set("external_id", ""),
				set("postings.0.amount_minor", 0), set("postings.0.amount_minor", -10_000), set("postings.0.amount_minor", 9.5),
				set("postings.0.direction", "DEBIT"), set("postings.0.direction", "dr"), set("postings.0.account", ""),
				set("postings.0.extra", 1), del("postings.1.direction"),
				set("postings", []any{map[string]any{"account": "psp_receivable", "direction": "debit", "amount_minor": 1}}),
			}),
		contracts.SubjectWalletBalance: slices.Concat(
			common("seller_id", "merchant_id", "payment_order_id", "currency", "changed_at"),
			[]mutation{
				set("cause", "refund"), del("payment_order_id"),
				set("pending_minor", -1), set("paid_out_minor", -1), set("version", 0), set("version", -3),
				set("delta_pending_minor", -100), // an order_succeeded change only adds
				set("available_minor", 1.5), set("available_minor", json.Number("-9223372036854775809")),
				set("pending_minor", json.Number("9223372036854775808")),
			}),
	}
	all := samples(t)
	for _, subject := range subjects(t) {
		ceType := contracts.TypeOf(subject)
		ms, ok := cases[subject]
		if !ok {
			t.Errorf("%s: no mutation cases; add them", subject)
			continue
		}
		base := all[subject][0].event
		_, always := jsonFields(reflect.TypeOf(base))
		for _, f := range always {
			ms = append(ms, del(f))
		}
		ms = append(ms, set("unexpected", "field"))
		for _, m := range ms {
			var doc map[string]any
			if err := json.Unmarshal(marshal(t, base), &doc); err != nil {
				t.Fatal(err)
			}
			m.fn(doc)
			err := contracts.ValidateEvent(ceType, marshal(t, doc))
			var se *contracts.SchemaError
			switch {
			case err == nil:
				t.Errorf("%s %s: accepted", ceType, m.name)
			case !errors.Is(err, contracts.ErrInvalidEvent) || !errors.As(err, &se) || len(se.Violations) == 0:
				t.Errorf("%s %s: error %v, want a *SchemaError with violations", ceType, m.name, err)
			}
		}
	}
}

// The checkout's mode decides its optional fields, as payment's validation
// does: hosted needs return_url and takes no payment_method; direct needs a
// payment_method and may have a return_url.
func TestCheckoutModeRules(t *testing.T) {
	t.Parallel()
	ceType := contracts.TypeOf(contracts.SubjectCheckoutCreated)
	ss := samples(t)[contracts.SubjectCheckoutCreated]
	hosted := ss[0].event.(contracts.CheckoutCreated)
	direct := ss[2].event.(contracts.CheckoutCreated)
	for _, c := range []struct {
		name string
		mod  func(*contracts.CheckoutCreated)
		ok   bool
	}{
		{"hosted as emitted", func(*contracts.CheckoutCreated) {}, true},
		{"hosted without return_url", func(e *contracts.CheckoutCreated) { e.ReturnURL = "" }, false},
		{"hosted with payment_method", func(e *contracts.CheckoutCreated) { e.PaymentMethod = "pm_card_visa" }, false},
		{"direct as hosted with payment_method", func(e *contracts.CheckoutCreated) {
			e.Mode, e.PaymentMethod = contracts.ModeDirect, "pm_card_visa"
		}, true},
		{"direct without payment_method", func(e *contracts.CheckoutCreated) { e.Mode = contracts.ModeDirect }, false},
		{"direct, token with a space", func(e *contracts.CheckoutCreated) {
			e.Mode, e.PaymentMethod = contracts.ModeDirect, "pm card"
		}, false},
	} {
		e := hosted
		c.mod(&e)
		err := contracts.ValidateEvent(ceType, marshal(t, e))
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok = %v", c.name, err, c.ok)
		}
	}
	direct.ReturnURL = ""
	if err := contracts.ValidateEvent(ceType, marshal(t, direct)); err != nil {
		t.Errorf("direct without return_url: %v", err)
	}
}

// A negative available balance is legal (a refund after a pay-out), so is a
// balance far beyond a single payment's MaxAmount: balances are sums.
func TestWalletBalanceBounds(t *testing.T) {
	t.Parallel()
	ev := samples(t)[contracts.SubjectWalletBalance][0].event.(contracts.WalletBalanceChanged)
	for _, mod := range []func(*contracts.WalletBalanceChanged){
		func(e *contracts.WalletBalanceChanged) { e.AvailableMinor = -1 << 63 },
		func(e *contracts.WalletBalanceChanged) { e.PendingMinor = 1<<63 - 1 },
		func(e *contracts.WalletBalanceChanged) { e.PaidOutMinor = 10 * money.MaxAmount },
		func(e *contracts.WalletBalanceChanged) { e.Version = 1<<63 - 1 },
	} {
		e := ev
		mod(&e)
		if err := contracts.ValidateEvent(contracts.TypeOf(contracts.SubjectWalletBalance), marshal(t, e)); err != nil {
			t.Errorf("%+v: %v", e, err)
		}
	}
}

func TestValidateEventErrors(t *testing.T) {
	t.Parallel()
	payload := marshal(t, samples(t)[contracts.SubjectOrderSucceeded][0].event)
	for _, typ := range []string{"", "payments.order.succeeded", "payments.order.succeeded.v2", "common", "../schemas/common"} {
		if err := contracts.ValidateEvent(typ, payload); !errors.Is(err, contracts.ErrUnknownEventType) {
			t.Errorf("ValidateEvent(%q): %v, want ErrUnknownEventType", typ, err)
		}
	}
	ceType := contracts.TypeOf(contracts.SubjectOrderSucceeded)
	for _, bad := range []string{``, `{`, `{"a":1} {"b":2}`, `null`, `[]`, `"x"`} {
		if err := contracts.ValidateEvent(ceType, []byte(bad)); !errors.Is(err, contracts.ErrInvalidEvent) {
			t.Errorf("ValidateEvent(%q): %v, want ErrInvalidEvent", bad, err)
		}
	}

	// Every violation is reported, each with the path of its value.
	var doc map[string]any
	if err := json.Unmarshal(payload, &doc); err != nil {
		t.Fatal(err)
	}
	doc["currency"], doc["fee_minor"] = "usd", -1
	delete(doc, "seller_id")
	err := contracts.ValidateEvent(ceType, marshal(t, doc))
	var se *contracts.SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *SchemaError", err)
	}
	if se.Type != ceType {
		t.Errorf("Type = %q", se.Type)
	}
	var paths []string
	for _, v := range se.Violations {
		paths = append(paths, v.Path)
		if v.Message == "" {
			t.Errorf("violation at %q without a message", v.Path)
		}
	}
	if want := []string{"", "/currency", "/fee_minor"}; !slices.Equal(paths, want) {
		t.Errorf("violations at %v, want %v: %v", paths, want, err)
	}
	for _, s := range []string{"seller_id", "/currency", "/fee_minor"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %s", err, s)
		}
	}
}

// The package-level validator is built once and shared; concurrent use is
// safe (run with -race).
func TestValidateEventConcurrent(t *testing.T) {
	t.Parallel()
	all := samples(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(all))
	for range 8 {
		for subject, ss := range all {
			wg.Go(func() {
				errs <- contracts.ValidateEvent(contracts.TypeOf(subject), marshal(t, ss[0].event))
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// asyncAPI is the part of contracts/asyncapi.yaml the tests read.
type asyncAPI struct {
	AsyncAPI string `yaml:"asyncapi"`
	Servers  map[string]struct {
		Protocol string `yaml:"protocol"`
	} `yaml:"servers"`
	Channels map[string]struct {
		Address  string                       `yaml:"address"`
		Stream   string                       `yaml:"x-paypipe-stream"`
		Messages map[string]map[string]string `yaml:"messages"`
	} `yaml:"channels"`
	Operations map[string]struct {
		Action   string            `yaml:"action"`
		Service  string            `yaml:"x-paypipe-service"`
		Channel  map[string]string `yaml:"channel"`
		Messages []map[string]string
		Consumer *struct {
			Durable        string   `yaml:"durable"`
			Stream         string   `yaml:"stream"`
			FilterSubjects []string `yaml:"filterSubjects"`
		} `yaml:"x-paypipe-consumer"`
	} `yaml:"operations"`
	Components struct {
		Messages map[string]struct {
			Name    string `yaml:"name"`
			Title   string `yaml:"title"`
			Headers struct {
				AllOf []struct {
					Ref        string `yaml:"$ref"`
					Properties map[string]struct {
						Const string `yaml:"const"`
					} `yaml:"properties"`
				} `yaml:"allOf"`
			} `yaml:"headers"`
			Payload struct {
				SchemaFormat string            `yaml:"schemaFormat"`
				Schema       map[string]string `yaml:"schema"`
			} `yaml:"payload"`
			Examples []struct {
				Name    string         `yaml:"name"`
				Payload map[string]any `yaml:"payload"`
			} `yaml:"examples"`
		} `yaml:"messages"`
		Schemas map[string]struct {
			Required []string `yaml:"required"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

func loadAsyncAPI(t *testing.T) (asyncAPI, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc asyncAPI
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	return doc, tree
}

// resolve follows a local reference (#/a/b/c) in the YAML tree.
func resolve(tree map[string]any, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = tree
	for _, k := range strings.Split(p, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[strings.NewReplacer("~1", "/", "~0", "~").Replace(k)]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// refs collects every $ref value in the tree.
func refs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "$ref" {
				*out = append(*out, s)
			}
			refs(c, out)
		}
	case []any:
		for _, c := range x {
			refs(c, out)
		}
	}
}

// The AsyncAPI document describes every subject: a channel at the subject's
// address naming the stream that captures it, one message whose payload is
// the subject's schema file and whose headers pin ce-type, one send
// operation, and one receive operation per durable consumer whose filter
// takes the subject (and none for consumers that do not exist). Every
// reference resolves and every example validates.
func TestAsyncAPI(t *testing.T) {
	t.Parallel()
	doc, tree := loadAsyncAPI(t)
	if doc.AsyncAPI != "3.0.0" {
		t.Errorf("asyncapi %q, want 3.0.0", doc.AsyncAPI)
	}
	if len(doc.Servers) == 0 {
		t.Error("no servers")
	}
	for name, s := range doc.Servers {
		if s.Protocol != "nats" {
			t.Errorf("server %s: protocol %q", name, s.Protocol)
		}
	}

	var all []string
	refs(tree, &all)
	for _, r := range all {
		if strings.HasPrefix(r, "#/") {
			if _, ok := resolve(tree, r); !ok {
				t.Errorf("$ref %s does not resolve", r)
			}
		} else if _, err := os.Stat(r); err != nil {
			t.Errorf("$ref %s: %v", r, err)
		}
	}
	envelope := doc.Components.Schemas["envelope"].Required
	for _, h := range []string{"ce-id", "ce-type", "ce-source", "ce-time", "ce-specversion", "content-type",
		"paypipe-correlation-id", "paypipe-aggregate-id", "paypipe-aggregate-version", "Nats-Msg-Id"} {
		if !slices.Contains(envelope, h) {
			t.Errorf("envelope does not require header %s", h)
		}
	}

	// consumers by subject, from contracts.Consumers.
	consumersOf := map[string][]string{}
	declared := map[string]contracts.Consumer{}
	for _, c := range contracts.Consumers(contracts.ConsumerOptions{}) {
		declared[c.Config.Durable] = c
		for _, f := range c.Config.FilterSubjects {
			consumersOf[f] = append(consumersOf[f], c.Config.Durable)
		}
	}
	sources := map[string]bool{contracts.SourcePayment: true, contracts.SourceExecutor: true, contracts.SourceLedger: true, contracts.SourceWallet: true}

	channelOf := map[string]string{}
	for id, ch := range doc.Channels {
		if prev, dup := channelOf[ch.Address]; dup {
			t.Errorf("channels %s and %s share address %s", prev, id, ch.Address)
		}
		channelOf[ch.Address] = id
	}
	for name, subject := range subjects(t) {
		ceType := contracts.TypeOf(subject)
		chID, ok := channelOf[subject]
		if !ok {
			t.Errorf("%s (%s): no channel", name, subject)
			continue
		}
		ch := doc.Channels[chID]
		if want := contracts.StreamOf(subject); ch.Stream != want {
			t.Errorf("channel %s: x-paypipe-stream %q, want %q", chID, ch.Stream, want)
		}
		if len(ch.Messages) != 1 {
			t.Errorf("channel %s: %d messages, want 1", chID, len(ch.Messages))
			continue
		}
		var msgRef string
		for _, m := range ch.Messages {
			msgRef = m["$ref"]
		}
		msgID, ok := strings.CutPrefix(msgRef, "#/components/messages/")
		msg, found := doc.Components.Messages[msgID]
		if !ok || !found {
			t.Errorf("channel %s: message %q is not a component message", chID, msgRef)
			continue
		}
		if msg.Name != subject || msg.Title != ceType {
			t.Errorf("message %s: name %q title %q, want %q and %q", msgID, msg.Name, msg.Title, subject, ceType)
		}
		if want := "./schemas/" + ceType + ".json"; msg.Payload.Schema["$ref"] != want {
			t.Errorf("message %s: payload $ref %q, want %q", msgID, msg.Payload.Schema["$ref"], want)
		}
		if msg.Payload.SchemaFormat != "application/schema+json;version=draft-2020-12" {
			t.Errorf("message %s: schemaFormat %q", msgID, msg.Payload.SchemaFormat)
		}
		var gotType, gotSource string
		var envRef bool
		for _, a := range msg.Headers.AllOf {
			envRef = envRef || a.Ref == "#/components/schemas/envelope"
			if p, ok := a.Properties["ce-type"]; ok {
				gotType = p.Const
			}
			if p, ok := a.Properties["ce-source"]; ok {
				gotSource = p.Const
			}
		}
		if !envRef || gotType != ceType || !sources[gotSource] {
			t.Errorf("message %s headers: envelope %v, ce-type %q (want %q), ce-source %q", msgID, envRef, gotType, ceType, gotSource)
		}
		if len(msg.Examples) == 0 {
			t.Errorf("message %s: no example", msgID)
		}
		for _, ex := range msg.Examples {
			if err := contracts.ValidateEvent(ceType, marshal(t, ex.Payload)); err != nil {
				t.Errorf("message %s example %q: %v", msgID, ex.Name, err)
			}
		}

		// Operations on this channel.
		var senders []string
		var receivers []string
		for opID, op := range doc.Operations {
			if op.Channel["$ref"] != "#/channels/"+chID {
				continue
			}
			if len(op.Messages) != 1 || op.Messages[0]["$ref"] != "#/channels/"+chID+"/messages/"+firstKey(ch.Messages) {
				t.Errorf("operation %s: messages %v", opID, op.Messages)
			}
			switch op.Action {
			case "send":
				senders = append(senders, op.Service)
				if "paypipe/"+op.Service != gotSource {
					t.Errorf("operation %s: sent by %s, but ce-source is %s", opID, op.Service, gotSource)
				}
			case "receive":
				if op.Consumer == nil {
					t.Errorf("operation %s: receive without x-paypipe-consumer", opID)
					continue
				}
				receivers = append(receivers, op.Consumer.Durable)
				c, ok := declared[op.Consumer.Durable]
				if !ok {
					t.Errorf("operation %s: consumer %s is not declared in contracts.Consumers", opID, op.Consumer.Durable)
					continue
				}
				if op.Consumer.Stream != c.Stream || !slices.Equal(op.Consumer.FilterSubjects, c.Config.FilterSubjects) {
					t.Errorf("operation %s: consumer %s on %s %v, declared on %s %v", opID, op.Consumer.Durable,
						op.Consumer.Stream, op.Consumer.FilterSubjects, c.Stream, c.Config.FilterSubjects)
				}
			default:
				t.Errorf("operation %s: action %q", opID, op.Action)
			}
		}
		if len(senders) != 1 {
			t.Errorf("channel %s: senders %v, want exactly one", chID, senders)
		}
		slices.Sort(receivers)
		want := slices.Clone(consumersOf[subject])
		slices.Sort(want)
		if !slices.Equal(receivers, want) {
			t.Errorf("channel %s: receive operations for %v, declared consumers %v", chID, receivers, want)
		}
	}
	if len(doc.Channels) != len(subjects(t)) {
		t.Errorf("%d channels for %d subjects", len(doc.Channels), len(subjects(t)))
	}
}

func firstKey(m map[string]map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}

// The schemas' enums are exactly the constants of events.go: a status, mode,
// kind, cause or direction added in Go must be added to its schema.
func TestEnumsMatchConstants(t *testing.T) {
	t.Parallel()
	prefix := func(p string) func(string) bool { return func(n string) bool { return strings.HasPrefix(n, p) } }
	for _, c := range []struct {
		file    string
		pointer []string
		consts  func(string) bool
	}{
		{"common.json", []string{"$defs", "pspStatus", "enum"}, prefix("PSPStatus")},
		{"payments.checkout.created.v1.json", []string{"properties", "mode", "enum"}, prefix("Mode")},
		{"ledger.entry.posted.v1.json", []string{"properties", "kind", "enum"}, prefix("Entry")},
		{"ledger.entry.posted.v1.json", []string{"$defs", "posting", "properties", "direction", "enum"},
			func(n string) bool { return n == "Debit" || n == "Credit" }},
		{"wallet.balance.changed.v1.json", []string{"properties", "cause", "enum"}, prefix("Cause")},
	} {
		raw, err := os.ReadFile(filepath.Join("schemas", c.file))
		if err != nil {
			t.Fatal(err)
		}
		var cur any
		if err := json.Unmarshal(raw, &cur); err != nil {
			t.Fatal(err)
		}
		for _, k := range c.pointer {
			m, _ := cur.(map[string]any)
			cur = m[k]
		}
		arr, ok := cur.([]any)
		if !ok {
			t.Errorf("%s: no enum at %s", c.file, strings.Join(c.pointer, "/"))
			continue
		}
		var got []string
		for _, v := range arr {
			s, _ := v.(string)
			got = append(got, s)
		}
		slices.Sort(got)
		want := constValues(t, c.consts)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s %s: enum %v, events.go constants %v", c.file, strings.Join(c.pointer, "/"), got, want)
		}
	}
}
