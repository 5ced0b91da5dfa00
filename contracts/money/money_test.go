package money

import (
	"errors"
	"math"
	"testing"
)

func TestParseCurrency(t *testing.T) {
	for code, exp := range map[string]int{"USD": 2, "JPY": 0, "KWD": 3, "CLP": 0, "EUR": 2} {
		c, err := ParseCurrency(code)
		if err != nil || c.Exponent != exp {
			t.Errorf("%s: %+v %v", code, c, err)
		}
	}
	for _, bad := range []string{"usd", "XXX", "ABC", "", "US", "USDD", "XAU"} {
		if _, err := ParseCurrency(bad); !errors.Is(err, ErrUnknownCurrency) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}

func TestValidAmount(t *testing.T) {
	for _, a := range []int64{1, MaxAmount} {
		if err := ValidAmount(a); err != nil {
			t.Errorf("%d: %v", a, err)
		}
	}
	if !errors.Is(ValidAmount(0), ErrNotPositive) || !errors.Is(ValidAmount(-1), ErrNotPositive) {
		t.Error("non-positive accepted")
	}
	if !errors.Is(ValidAmount(MaxAmount+1), ErrTooLarge) || !errors.Is(ValidAmount(math.MaxInt64), ErrTooLarge) {
		t.Error("too large accepted")
	}
}

func TestSumOverflow(t *testing.T) {
	if s, err := Sum(1, 2, 3); s != 6 || err != nil {
		t.Fatal(s, err)
	}
	if _, err := Sum(math.MaxInt64, 1); !errors.Is(err, ErrOverflow) {
		t.Fatal(err)
	}
	if _, err := Add(math.MinInt64, -1); !errors.Is(err, ErrOverflow) {
		t.Fatal(err)
	}
}

// The rounding rule: half up to the minor unit; fee + net = amount.
func TestFeeRounding(t *testing.T) {
	cases := []struct {
		amount int64
		bps    int
		want   int64
	}{
		{10000, 300, 300},  // 100.00 at 3% = 3.00 (DESIGN §7 example)
		{1, 300, 0},        // 0.03 → 0
		{17, 300, 1},       // 0.51 → 1 (above half)
		{50, 100, 1},       // exactly 0.5 → 1 (half up)
		{150, 100, 2},      // 1.5 → 2 (half up, not to even)
		{250, 100, 3},      // 2.5 → 3 (banker's would give 2)
		{49, 100, 0},       // 0.49 → 0
		{999, 0, 0},        // no fee
		{999, 10_000, 999}, // 100%
		{MaxAmount, 10_000, MaxAmount},
		{math.MaxInt64, 10_000, math.MaxInt64},
	}
	for _, c := range cases {
		got, err := Fee(c.amount, c.bps)
		if err != nil || got != c.want {
			t.Errorf("Fee(%d, %d) = %d, %v; want %d", c.amount, c.bps, got, err, c.want)
		}
		if net := c.amount - got; net+got != c.amount || net < 0 {
			t.Errorf("net %d + fee %d != %d", net, got, c.amount)
		}
	}
	for _, bad := range [][2]int64{{-1, 300}, {100, -1}, {100, 10_001}} {
		if _, err := Fee(bad[0], int(bad[1])); err == nil {
			t.Errorf("Fee(%d, %d) accepted", bad[0], bad[1])
		}
	}
}

func TestFormat(t *testing.T) {
	usd, _ := ParseCurrency("USD")
	jpy, _ := ParseCurrency("JPY")
	kwd, _ := ParseCurrency("KWD")
	for _, c := range []struct {
		a    int64
		cur  Currency
		want string
	}{
		{1050, usd, "USD 10.50"}, {5, usd, "USD 0.05"}, {-5, usd, "USD -0.05"},
		{1050, jpy, "JPY 1050"}, {1, kwd, "KWD 0.001"}, {math.MinInt64, usd, "USD -92233720368547758.08"},
	} {
		if got := Format(c.a, c.cur); got != c.want {
			t.Errorf("Format(%d, %s) = %q, want %q", c.a, c.cur.Code, got, c.want)
		}
	}
}
