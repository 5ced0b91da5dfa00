package main

import (
	"context"
	"fmt"

	"github.com/paypipe/paypipe/services/pspsim"
)

// payoutRow is a payout as paypipe records it.
type payoutRow struct {
	seller, currency, status string
	amount                   int64
}

// refundRow is a refund as paypipe records it.
type refundRow struct {
	order, currency, status string
	amount                  int64
}

// measurePayouts holds paypipe's payouts to the simulator's payout log and
// to the wallets (I9): at most one PSP payout per payout id; each PSP
// payout belongs to a payout with its amount, currency and final status;
// each paid payout was paid at the PSP; and per seller and currency, the
// wallet's paid_out equals Σ of its created, sent and paid payouts (failed
// ones gave the money back).
func (h *harness) measurePayouts(ctx context.Context, s *Summary) error {
	psps, err := h.c.pspPayouts(ctx)
	if err != nil {
		return fmt.Errorf("payout log: %w", err)
	}
	ours := map[string]payoutRow{}
	rows, err := h.pool.Query(ctx, `SELECT id::text, seller_id, currency, status, amount_minor FROM payout.payouts`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		var p payoutRow
		if err := rows.Scan(&id, &p.seller, &p.currency, &p.status, &p.amount); err != nil {
			return err
		}
		ours[id] = p
	}
	if err := rows.Err(); err != nil {
		return err
	}
	paidOut := map[string]int64{}
	rows, err = h.pool.Query(ctx, `SELECT seller_id || '/' || currency, paid_out_minor FROM wallet.balances`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		paidOut[k] = v
	}
	if err := rows.Err(); err != nil {
		return err
	}
	comparePayouts(s, psps, ours, paidOut)
	return nil
}

func comparePayouts(s *Summary, psps []pspsim.PayoutRecord, ours map[string]payoutRow, paidOut map[string]int64) {
	fail := func(format string, args ...any) {
		s.Safety.PayoutMismatches++
		if s.Safety.PayoutMismatches <= 10 {
			s.Failures = append(s.Failures, fmt.Sprintf(format, args...))
		}
	}
	s.Expected.PSPPayouts = int64(len(psps))
	s.Payouts = int64(len(ours))
	s.PayoutsByStatus = map[string]int64{}
	perRef := map[string]pspsim.PayoutRecord{}
	for _, pp := range psps {
		if prev, dup := perRef[pp.MerchantReference]; dup {
			s.Safety.DoublePayouts++
			s.Failures = append(s.Failures, fmt.Sprintf("payout %s paid out twice at the PSP (%s and %s)", pp.MerchantReference, prev.ID, pp.ID))
			continue
		}
		perRef[pp.MerchantReference] = pp
		if pp.Status == "failed" {
			s.Expected.PSPPayoutsFailed++
		}
		p, ok := ours[pp.MerchantReference]
		switch {
		case !ok:
			fail("PSP payout %s for unknown payout %s", pp.ID, pp.MerchantReference)
		case p.amount != pp.AmountMinor || p.currency != pp.Currency:
			fail("payout %s is %d %s, the PSP paid out %d %s", pp.MerchantReference, p.amount, p.currency, pp.AmountMinor, pp.Currency)
		case pp.Status == "paid" && p.status != "paid", pp.Status == "failed" && p.status != "failed":
			fail("payout %s is %s, at the PSP %s", pp.MerchantReference, p.status, pp.Status)
		case pp.Status != "paid" && pp.Status != "failed":
			fail("payout %s still %s at the PSP after quiescence", pp.MerchantReference, pp.Status)
		}
	}
	reserved := map[string]int64{}
	for id, p := range ours {
		s.PayoutsByStatus[p.status]++
		switch p.status {
		case "paid":
			if _, ok := perRef[id]; !ok {
				fail("payout %s paid without a PSP payout", id)
			}
			reserved[p.seller+"/"+p.currency] += p.amount
		case "created", "sent":
			reserved[p.seller+"/"+p.currency] += p.amount
		}
	}
	for k := range union(reserved, paidOut) {
		if d := reserved[k] - paidOut[k]; d != 0 {
			s.Safety.PayoutWalletDriftMinorUnits += abs(d)
			s.Failures = append(s.Failures, fmt.Sprintf("%s: payouts created, sent or paid %d, wallet paid_out %d", k, reserved[k], paidOut[k]))
		}
	}
}

// measureRefunds holds paypipe's refunds to the simulator's refund log: at
// most one PSP refund per refund id; every succeeded refund refunded at the
// PSP with its amount and currency, and no other; and no order refunded
// beyond what was captured.
func (h *harness) measureRefunds(ctx context.Context, s *Summary) error {
	psps, err := h.c.pspRefunds(ctx)
	if err != nil {
		return fmt.Errorf("refund log: %w", err)
	}
	ours := map[string]refundRow{}
	rows, err := h.pool.Query(ctx, `SELECT id::text, payment_order_id::text, currency, status, amount_minor FROM payment.refunds`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		var r refundRow
		if err := rows.Scan(&id, &r.order, &r.currency, &r.status, &r.amount); err != nil {
			return err
		}
		ours[id] = r
	}
	if err := rows.Err(); err != nil {
		return err
	}
	compareRefunds(s, psps, ours)
	return h.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT o.id FROM payment.payment_orders o
  JOIN payment.refunds r ON r.payment_order_id = o.id AND r.status IN ('pending', 'succeeded')
  GROUP BY o.id, o.amount_minor HAVING sum(r.amount_minor) > o.amount_minor) x`).Scan(&s.Safety.RefundsOverCaptured)
}

func compareRefunds(s *Summary, psps []pspsim.RefundRecord, ours map[string]refundRow) {
	fail := func(format string, args ...any) {
		s.Safety.RefundMismatches++
		if s.Safety.RefundMismatches <= 10 {
			s.Failures = append(s.Failures, fmt.Sprintf(format, args...))
		}
	}
	s.Expected.PSPRefunds = int64(len(psps))
	s.Refunds = int64(len(ours))
	s.RefundsByStatus = map[string]int64{}
	perRef := map[string]bool{} // refund id → succeeded at the PSP
	for _, pr := range psps {
		if _, dup := perRef[pr.MerchantReference]; dup {
			s.Safety.DoubleRefunds++
			s.Failures = append(s.Failures, fmt.Sprintf("refund %s refunded twice at the PSP", pr.MerchantReference))
			continue
		}
		perRef[pr.MerchantReference] = pr.Status == "succeeded"
		r, ok := ours[pr.MerchantReference]
		switch {
		case !ok:
			fail("PSP refund %s for unknown refund %s", pr.ID, pr.MerchantReference)
		case r.amount != pr.AmountMinor || r.currency != pr.Currency:
			fail("refund %s is %d %s, the PSP refunded %d %s", pr.MerchantReference, r.amount, r.currency, pr.AmountMinor, pr.Currency)
		case (pr.Status == "succeeded") != (r.status == "succeeded"):
			fail("refund %s is %s, at the PSP %s", pr.MerchantReference, r.status, pr.Status)
		}
	}
	for id, r := range ours {
		s.RefundsByStatus[r.status]++
		if r.status == "succeeded" && !perRef[id] {
			fail("refund %s succeeded without a PSP refund", id)
		}
	}
}
