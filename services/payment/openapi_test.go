package payment_test

import (
	"os"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/paypipe/paypipe/services/payment"
)

// TestOpenAPIMatchesTheCode keeps contracts/openapi.yaml honest: every
// route is described, and its problem types are exactly the problems table.
func TestOpenAPIMatchesTheCode(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../contracts/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI    string                    `yaml:"openapi"`
		Paths      map[string]map[string]any `yaml:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `yaml:"enum"`
				} `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	for _, route := range [][2]string{
		{"post", "/v1/sellers"}, {"get", "/v1/sellers/{id}"}, {"post", "/v1/checkouts"}, {"get", "/v1/checkouts"},
		{"get", "/v1/checkouts/{id}"}, {"get", "/v1/payment_orders/{id}"}, {"post", "/v1/psp/webhooks"},
		{"post", "/v1/payment_orders/{id}/fulfil"}, {"post", "/v1/payment_orders/{id}/refunds"},
		{"get", "/v1/payment_orders/{id}/refunds"}, {"get", "/v1/refunds/{id}"}, {"get", "/v1/payouts"}, {"get", "/v1/payouts/{id}"},
	} {
		if _, ok := doc.Paths[route[1]][route[0]]; !ok {
			t.Errorf("%s %s is not described", route[0], route[1])
		}
	}
	documented := doc.Components.Schemas["Problem"].Properties["type"].Enum
	var want []string
	for _, c := range payment.ProblemCodes() {
		want = append(want, payment.ProblemType(c))
	}
	slices.Sort(documented)
	slices.Sort(want)
	if !slices.Equal(documented, want) {
		t.Fatalf("problem types documented:\n%v\nin the code:\n%v", documented, want)
	}
	fieldCodes := doc.Components.Schemas["FieldError"].Properties["code"].Enum
	for _, c := range []string{payment.FieldAmountNotInteger, payment.FieldCurrencyNotUpperCase, payment.FieldReturnURLHostNotAllowed,
		payment.FieldSellerNotFound, payment.FieldStartingAfterNotFound, payment.FieldDuplicateField, payment.FieldTotalTooLarge,
		payment.FieldInvalidEnum, payment.FieldInvalidTimestamp} {
		if !slices.Contains(fieldCodes, c) {
			t.Errorf("field code %s is not documented", c)
		}
	}
}
