package payout

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/services/psp"
)

// Outcomes of applying a PSP report (a create's answer, a webhook, a poll).
const (
	outcomeApplied     = "applied"     // the payout moved forward; events written
	outcomeNoChange    = "no_change"   // nothing new (a repeat, a non-final status)
	outcomeIgnored     = "ignored"     // not a report about a payout's fate
	outcomeQuarantined = "quarantined" // disagrees with the payout; kept, not applied
)

// applyReport applies the PSP's view pp of payout p (locked in tx), forward
// only. A sent report that never arrived is implied by a final one: a
// created payout the PSP reports paid moves to sent, then to paid, each
// with its event. A report that disagrees with the payout (reference,
// amount, currency, PSP id, or a final status contradicting the recorded
// one) is not applied: the caller quarantines it with the reason.
func (s *Service) applyReport(ctx context.Context, tx pgx.Tx, p *Payout, pp psp.Payout, cause string) (outcome, reason string, err error) {
	if reason := disagreement(*p, pp); reason != "" {
		return outcomeQuarantined, reason, nil
	}
	if rank(p.Status) < rank(contracts.PayoutStatusCreated) || p.Status == contracts.PayoutStatusCanceled {
		return outcomeQuarantined, fmt.Sprintf("the PSP reports payout %s %s, but it was never sent (status %s)", p.ID, pp.Status, p.Status), nil
	}
	outcome = outcomeNoChange
	if p.Status == contracts.PayoutStatusCreated {
		if err := s.advance(ctx, tx, p, change{to: contracts.PayoutStatusSent, pspPayoutID: pp.ID, pspStatus: pp.Status, cause: cause}); err != nil {
			return "", "", err
		}
		outcome = outcomeApplied
	}
	if !psp.FinalPayout(pp.Status) {
		if p.Status == contracts.PayoutStatusSent && pp.Status != p.PSPStatus {
			if _, err := tx.Exec(ctx, `UPDATE payout.payouts SET psp_status = $2, updated_at = now() WHERE id = $1`, p.ID, pp.Status); err != nil {
				return "", "", fmt.Errorf("payout: psp status of %s: %w", p.ID, err)
			}
			p.PSPStatus = pp.Status
		}
		return outcome, "", nil
	}
	to := contracts.PayoutStatusPaid
	code := ""
	if pp.Status == psp.PayoutFailed {
		to = contracts.PayoutStatusFailed
		code = pp.FailureCode
		if code == "" {
			code = "payout_failed"
		}
	}
	if p.Status != contracts.PayoutStatusSent {
		if p.Status == to {
			return outcome, "", nil
		}
		return outcomeQuarantined, fmt.Sprintf("the PSP reports payout %s %s, but it is %s", p.ID, pp.Status, p.Status), nil
	}
	if err := s.advance(ctx, tx, p, change{to: to, pspStatus: pp.Status, failureCode: code, cause: cause}); err != nil {
		return "", "", err
	}
	return outcomeApplied, "", nil
}

// disagreement says how pp contradicts p, or "" if it does not.
func disagreement(p Payout, pp psp.Payout) string {
	switch {
	case pp.ID == "":
		return "the PSP's payout has no id"
	case pp.MerchantReference != p.ID:
		return fmt.Sprintf("PSP payout %s has merchant reference %q, want %q", pp.ID, pp.MerchantReference, p.ID)
	case p.PSPPayoutID != "" && pp.ID != p.PSPPayoutID:
		return fmt.Sprintf("PSP payout %s, but payout %s was sent as %s", pp.ID, p.ID, p.PSPPayoutID)
	case pp.Currency != p.Currency:
		return fmt.Sprintf("PSP payout %s in %s, payout %s in %s", pp.ID, pp.Currency, p.ID, p.Currency)
	case pp.AmountMinor != p.AmountMinor:
		return fmt.Sprintf("PSP payout %s of %d, payout %s of %d", pp.ID, pp.AmountMinor, p.ID, p.AmountMinor)
	}
	return ""
}
