package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/services/payment"
)

// Step 5: where the money went: the ledger, the sellers' balances and the
// PSP's charge log, each checked against the checkouts.

// demoOrderRef is one payment order of the run, labelled for the tables.
type demoOrderRef struct {
	label string // a/1, a/2, c1/1…
	c     *demoCheckout
	o     payment.PaymentOrder
}

// orders returns every order of the run, keyed by id, and the ids in order.
func (d *demoRun) orders() (map[string]demoOrderRef, []string) {
	byID := map[string]demoOrderRef{}
	var ids []string
	for _, c := range d.checkouts {
		for i, o := range c.co.Orders {
			id := o.ID.String()
			byID[id] = demoOrderRef{label: fmt.Sprintf("%s/%d", c.label, i+1), c: c, o: o}
			ids = append(ids, id)
		}
	}
	return byID, ids
}

func (r demoOrderRef) paid() bool { return r.c.final.Status == payment.StatusCompleted }

func (d *demoRun) printMoney(ctx context.Context) error {
	d.say("\n5. Where the money went")
	if err := d.printLedger(ctx); err != nil {
		return err
	}
	if err := d.printWallets(ctx); err != nil {
		return err
	}
	return d.printCharges(ctx)
}

type demoPosting struct {
	entryID, orderID, currency string
	postedAt                   time.Time
	account, direction         string
	amount                     int64
}

func (d *demoRun) printLedger(ctx context.Context) error {
	byID, ids := d.orders()
	rows, err := d.a.pool.Query(ctx, `SELECT e.id::text, e.payment_order_id, e.currency, e.posted_at, p.account, p.direction, p.amount_minor
FROM ledger.journal_entries e JOIN ledger.postings p ON p.entry_id = e.id
WHERE e.payment_order_id = ANY($1) ORDER BY e.posted_at, e.id, p.line`, ids)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	var ps []demoPosting
	var p demoPosting
	if _, err := pgx.ForEachRow(rows, []any{&p.entryID, &p.orderID, &p.currency, &p.postedAt, &p.account, &p.direction, &p.amount}, func() error {
		ps = append(ps, p)
		return nil
	}); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}

	d.say("   Ledger (ledger.journal_entries + ledger.postings) of this run's orders: one balanced entry per captured order")
	t := d.table("   ", "ORDER", "POSTED", "ACCOUNT", "DEBIT", "CREDIT")
	entries := map[string][]demoPosting{} // by order id
	entryIDs := map[string]map[string]bool{}
	for i, p := range ps {
		ref := byID[p.orderID]
		entries[p.orderID] = append(entries[p.orderID], p)
		if entryIDs[p.orderID] == nil {
			entryIDs[p.orderID] = map[string]bool{}
		}
		entryIDs[p.orderID][p.entryID] = true
		label, posted := "", ""
		if i == 0 || ps[i-1].entryID != p.entryID {
			label, posted = ref.label, since(ref.c.co.CreatedAt, &p.postedAt)
		}
		account := p.account
		if seller, ok := strings.CutPrefix(p.account, contracts.AccountSellerPayablePrefix); ok {
			account += " (" + d.sellerName(seller) + ")"
		}
		amount := fmtMoney(p.amount, p.currency)
		debit, credit := amount, ""
		if p.direction == contracts.Credit {
			debit, credit = "", amount
		}
		t.row(label, posted, account, debit, credit)
	}
	if err := t.flush(); err != nil {
		return err
	}
	d.say("   (POSTED counts from the checkout's creation)")

	var why []string
	var paid int
	for _, id := range ids {
		ref := byID[id]
		if !ref.paid() {
			if len(entries[id]) > 0 {
				why = append(why, fmt.Sprintf("%s (%s) has a ledger entry", ref.label, ref.c.final.Status))
			}
			continue
		}
		paid++
		if n := len(entryIDs[id]); n != 1 {
			why = append(why, fmt.Sprintf("%s has %d entries", ref.label, n))
			continue
		}
		got := map[string]int64{}
		var debits, credits int64
		for _, p := range entries[id] {
			got[p.direction+" "+p.account] += p.amount
			if p.direction == contracts.Debit {
				debits += p.amount
			} else {
				credits += p.amount
			}
		}
		o := ref.o
		want := map[string]int64{
			contracts.Debit + " " + contracts.AccountPSPReceivable:                o.AmountMinor,
			contracts.Credit + " " + contracts.SellerPayable(o.SellerID.String()): o.NetMinor,
			contracts.Credit + " " + contracts.AccountPlatformFeeRevenue:          o.FeeMinor,
		}
		if o.FeeMinor == 0 {
			delete(want, contracts.Credit+" "+contracts.AccountPlatformFeeRevenue)
		}
		if debits != credits || !mapsEqual(got, want) {
			why = append(why, fmt.Sprintf("%s: postings %v, want %v", ref.label, got, want))
		}
	}
	d.check("   ", fmt.Sprintf("%d paid orders, one entry each: Dr psp_receivable amount = Cr seller_payable net + Cr platform_fee_revenue fee; none for the declined", paid),
		len(why) == 0, why...)
	return nil
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (d *demoRun) printWallets(ctx context.Context) error {
	// What each seller must have pending: the net of its paid orders.
	want := map[string]map[string]int64{} // seller id → currency → pending
	for _, s := range d.sellers {
		want[s.ID.String()] = map[string]int64{}
	}
	byID, ids := d.orders()
	for _, id := range ids {
		if ref := byID[id]; ref.paid() {
			want[ref.o.SellerID.String()][ref.o.Currency] += ref.o.NetMinor
		}
	}
	got := map[string]map[string]int64{}
	// Balances reach the API through wallet.balance.changed, applied by
	// payment; the checkouts completing means it has been, but wait anyway
	// (bounded) rather than assume it.
	err := waitFor(ctx, 10*time.Second, "the sellers' balances", func(ctx context.Context) (bool, error) {
		for _, s := range d.sellers {
			var out payment.Seller
			if err := d.api.do(ctx, http.MethodGet, "/v1/sellers/"+s.ID.String(), "", nil, http.StatusOK, &out); err != nil {
				return false, err
			}
			got[s.ID.String()] = map[string]int64{}
			for _, b := range out.Balances {
				got[s.ID.String()][b.Currency] = b.PendingMinor
			}
		}
		for id := range want {
			if !mapsEqual(got[id], want[id]) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil && ctx.Err() != nil {
		return err
	}

	d.say("\n   Sellers' balances (GET /v1/sellers/{id} → balances), against the net of their paid orders")
	t := d.table("   ", "SELLER", "CURRENCY", "PENDING", "EXPECTED")
	var why []string
	for _, s := range d.sellers {
		id := s.ID.String()
		var curs []string
		for c := range got[id] {
			curs = append(curs, c)
		}
		for c := range want[id] {
			if _, ok := got[id][c]; !ok {
				curs = append(curs, c)
			}
		}
		slices.Sort(curs)
		for _, c := range curs {
			t.row(s.Name, c, fmtMoney(got[id][c], c), fmtMoney(want[id][c], c))
			if got[id][c] != want[id][c] {
				why = append(why, fmt.Sprintf("%s %s: %d, want %d", s.Name, c, got[id][c], want[id][c]))
			}
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	d.check("   ", "every seller's pending balance is the net of its paid orders (nothing from the declined card)", len(why) == 0, why...)
	return nil
}

func (d *demoRun) printCharges(ctx context.Context) error {
	sim := d.a.sim
	d.say("\n   The PSP's charge log (GET %s/admin/charges?merchant_reference=<checkout id>) and its payments (pspsim.payments)", sim.url)
	t := d.table("   ", "CHECKOUT", "STATUS", "PSP PAYMENTS", "CHARGES", "CHARGED", "CARD")
	var why []string
	paid := 0
	for _, c := range d.checkouts {
		id := c.co.ID.String()
		charges, err := d.api.charges(ctx, sim.url, sim.adminKey, id)
		if err != nil {
			return err
		}
		var payments int
		if err := d.a.pool.QueryRow(ctx, `SELECT count(*) FROM pspsim.payments WHERE merchant_reference = $1`, id).Scan(&payments); err != nil {
			return fmt.Errorf("pspsim payments: %w", err)
		}
		charged, card := "-", "-"
		if len(charges) > 0 {
			ch := charges[0]
			charged = fmtMoney(ch.AmountMinor, ch.Currency)
			card = ch.Card.Brand + " •••• " + ch.Card.Last4
		}
		t.row(c.label, c.final.Status, fmt.Sprint(payments), fmt.Sprint(len(charges)), charged, card)
		if payments != 1 {
			why = append(why, fmt.Sprintf("%s: %d PSP payments", c.label, payments))
		}
		switch c.final.Status {
		case payment.StatusCompleted:
			paid++
			if len(charges) != 1 || charges[0].AmountMinor != c.co.AmountMinor || charges[0].Currency != c.co.Currency {
				why = append(why, fmt.Sprintf("%s: %d charges (%s), want one of %s", c.label, len(charges), charged, fmtMoney(c.co.AmountMinor, c.co.Currency)))
			}
		default:
			if len(charges) != 0 {
				why = append(why, fmt.Sprintf("%s is %s but was charged %d times", c.label, c.final.Status, len(charges)))
			}
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	d.check("   ", fmt.Sprintf("one PSP payment per checkout (e too: the replayed POST made none); one charge per paid checkout (%d), none for the declined", paid),
		len(why) == 0, why...)
	return nil
}
