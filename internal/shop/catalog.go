package shop

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/paypipe/paypipe/contracts/money"
)

// MaxQuantity is the most of one item a basket may hold; it also keeps
// price × quantity far from overflowing (checkCatalog bounds prices).
const MaxQuantity = 10

// qtyPrefix prefixes the form field of an item's quantity: qty_<item id>.
const qtyPrefix = "qty_"

// item is one thing for sale, sold by one seller at a fixed price in the
// catalog's currency.
type item struct {
	ID          string // form-safe: [a-z0-9-]
	Name        string
	Description string
	Seller      int   // index into catalog.Sellers
	PriceMinor  int64 // minor units of catalog.Currency
}

// catalog is what the shop sells: a marketplace of a few sellers, one
// currency. It is data, built per Shop, never mutated after New.
type catalog struct {
	Currency money.Currency
	Sellers  []string // display names, in the order Setup creates them
	Items    []item
}

// demoCatalog is the shop's fixed stock: two sellers, five items, USD.
func demoCatalog() catalog {
	usd, err := money.ParseCurrency("USD")
	if err != nil {
		panic(err) // USD is in money's table; a failure here is a build error
	}
	return catalog{
		Currency: usd,
		Sellers:  []string{"Northwind Ceramics", "Harbor Tea Co."},
		Items: []item{
			{ID: "mug", Name: "Stoneware mug", Description: "Hand-thrown, 350 ml, speckled glaze.", Seller: 0, PriceMinor: 1800},
			{ID: "bowl", Name: "Noodle bowl", Description: "Deep bowl, 18 cm, celadon.", Seller: 0, PriceMinor: 2450},
			{ID: "vase", Name: "Bud vase", Description: "Small vase for a single stem.", Seller: 0, PriceMinor: 3200},
			{ID: "sencha", Name: "Sencha, 100 g", Description: "First-flush green tea from Shizuoka.", Seller: 1, PriceMinor: 1290},
			{ID: "teapot", Name: "Cast-iron teapot", Description: "0.8 l, with a stainless infuser.", Seller: 1, PriceMinor: 4500},
		},
	}
}

// check validates a catalog: unique form-safe ids, known sellers, and prices
// small enough that MaxQuantity of every item sums within money.MaxAmount.
func (c catalog) check() error {
	if len(c.Sellers) == 0 || len(c.Items) == 0 {
		return errors.New("catalog: no sellers or no items")
	}
	seen := map[string]bool{}
	limit := money.MaxAmount / int64(MaxQuantity*len(c.Items))
	for _, it := range c.Items {
		if it.ID == "" || strings.Trim(it.ID, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || seen[it.ID] {
			return fmt.Errorf("catalog: item id %q: want unique [a-z0-9-]+", it.ID)
		}
		seen[it.ID] = true
		if it.Seller < 0 || it.Seller >= len(c.Sellers) {
			return fmt.Errorf("catalog: item %s: unknown seller %d", it.ID, it.Seller)
		}
		if it.PriceMinor <= 0 || it.PriceMinor > limit {
			return fmt.Errorf("catalog: item %s: price %d: want 1 to %d", it.ID, it.PriceMinor, limit)
		}
	}
	return nil
}

// basket is a validated selection: a quantity per item (catalog order) and
// the resulting amount per seller (catalog order; 0 for a seller with
// nothing in the basket).
type basket struct {
	Qty     []int
	Sellers []int64
	Total   int64
}

// basketError is every basket validation error; Msg is meant for the buyer.
type basketError struct{ Msg string }

func (e *basketError) Error() string { return "invalid basket: " + e.Msg }

func basketErrorf(format string, a ...any) error { return &basketError{Msg: fmt.Sprintf(format, a...)} }

// parseBasket reads the quantities of a posted form. It is strict: a field
// for an item the catalog does not have, a repeated field, or a quantity
// that is not a whole number from 0 to MaxQuantity is refused, as is an
// empty basket. Fields other than qty_* are the caller's (allowed lists
// them); anything else is refused too.
func (c catalog) parseBasket(form url.Values, allowed ...string) (basket, error) {
	b := basket{Qty: make([]int, len(c.Items)), Sellers: make([]int64, len(c.Sellers))}
	index := make(map[string]int, len(c.Items))
	for i, it := range c.Items {
		index[it.ID] = i
	}
	for k, vs := range form {
		if len(vs) != 1 {
			return basket{}, basketErrorf("field %q appears %d times", k, len(vs))
		}
		id, ok := strings.CutPrefix(k, qtyPrefix)
		if !ok {
			if !slices.Contains(allowed, k) {
				return basket{}, basketErrorf("unexpected field %q", k)
			}
			continue
		}
		i, ok := index[id]
		if !ok {
			return basket{}, basketErrorf("there is no item %q in this shop", id)
		}
		q, err := parseQty(vs[0])
		if err != nil {
			return basket{}, basketErrorf("%s: %v", c.Items[i].Name, err)
		}
		b.Qty[i] = q
	}
	for i, it := range c.Items {
		// check bounds prices so that this cannot overflow; money.Sum
		// still checks, as everywhere money is added.
		line := it.PriceMinor * int64(b.Qty[i])
		s, err := money.Sum(b.Sellers[it.Seller], line)
		if err != nil {
			return basket{}, basketErrorf("%v", err)
		}
		b.Sellers[it.Seller] = s
	}
	total, err := money.Sum(b.Sellers...)
	if err != nil {
		return basket{}, basketErrorf("%v", err)
	}
	if total == 0 {
		return basket{}, basketErrorf("choose at least one item")
	}
	if err := money.ValidAmount(total); err != nil {
		return basket{}, basketErrorf("%v", err)
	}
	b.Total = total
	return b, nil
}

// parseQty accepts "" (none) or one or two decimal digits up to MaxQuantity.
func parseQty(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if len(s) > 2 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("quantity %q: want a whole number from 0 to %d", s, MaxQuantity)
	}
	q, err := strconv.Atoi(s)
	if err != nil || q > MaxQuantity {
		return 0, fmt.Errorf("quantity %q: want a whole number from 0 to %d", s, MaxQuantity)
	}
	return q, nil
}
