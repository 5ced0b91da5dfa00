package reconciler

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
)

// OutcomeMatched is the outcome of a line that matched the ledger; every
// other outcome is a mismatch class (contracts.Mismatch*).
const OutcomeMatched = "matched"

// outcomeSettledBefore is a line that an earlier version of the same day's
// file already settled, with the same figures: a PSP that re-issues a day's
// file (corrected, or downloaded before the day ended) repeats its lines.
// It counts as matched and posts nothing; a line settled by another day's
// file, or twice in one file, stays a duplicate_line.
const outcomeSettledBefore = "settled_before"

// expectedRow is the reconciler's projection of what the ledger says the PSP
// must settle under one psp_reference.
type expectedRow struct {
	PSPReference string
	RecordType   string
	Reference    string
	Currency     string
	GrossMinor   int64
	PostedAt     *time.Time // nil: only a parked line, no ledger entry yet
	SettledFile  *string
	SettledLine  *int64
	SettledDate  *time.Time
	Parked       bool
}

// pspAnswer is what the PSP said about a charge the ledger does not know.
type pspAnswer struct {
	found             bool
	status            string
	amountMinor       int64
	currency          string
	merchantReference string
}

// verdict is a line's classification.
type verdict struct {
	Outcome  string // OutcomeMatched or a mismatch class
	Detail   string
	Reaction string
	Ledger   int64 // the ledger's gross, 0 if it has none
}

// Reactions, per class: what paypipe did or what a person must do.
var reactions = map[string]string{
	contracts.MismatchMissingCapture:      "confirmed with the PSP: recon.charge.confirmed sent, the payment advances and the ledger posts the capture; the line is parked and settles when the capture is posted",
	contracts.MismatchSettlesLater:        "carried over: rechecked by the next runs; escalated to missing_in_settlement after the grace period",
	contracts.MismatchMissingInSettlement: "finance: the ledger holds the movement but no settlement file has it after the grace period; ask the PSP",
	contracts.MismatchAmount:              "finance: the PSP settled a different gross than the ledger holds; nothing posted for the line",
	contracts.MismatchFee:                 "finance: the PSP's fee differs from the contracted fee; nothing posted for the line",
	contracts.MismatchCurrency:            "finance: the PSP settled the movement in another currency; nothing posted for the line",
	contracts.MismatchWalletDrift:         "finance: a seller wallet differs from its ledger account; re-run after the pipeline drains, then investigate",
	contracts.MismatchUnknownReference:    "investigation: neither the ledger nor the PSP knows the line; nothing posted",
	contracts.MismatchDuplicateLine:       "investigation: the movement was settled before; the line is not posted twice",
	contracts.MismatchMalformedLine:       "investigation: the line cannot be read; nothing posted",
}

// Reaction returns the reaction text of a mismatch class.
func Reaction(class string) string { return reactions[class] }

func mismatch(class, detail string, ledger int64) verdict {
	return verdict{Outcome: class, Detail: detail, Reaction: reactions[class], Ledger: ledger}
}

// classify decides one readable line against the ledger's row for its
// reference (nil if none). seenInChunk reports an earlier line of the same
// chunk with this reference; ans is the PSP's answer for an unknown charge.
func classify(l *Line, e *expectedRow, seenInChunk bool, ans *pspAnswer, feeBPS int) verdict {
	return classifyIn("", "", l, e, seenInChunk, ans, feeBPS)
}

// classifyIn is classify within a run of date (YYYY-MM-DD) over fileID,
// which tells a line settled by an earlier version of the day's file.
func classifyIn(date, fileID string, l *Line, e *expectedRow, seenInChunk bool, ans *pspAnswer, feeBPS int) verdict {
	if e != nil && !seenInChunk && e.SettledFile != nil && e.SettledDate != nil && date != "" &&
		*e.SettledFile != fileID && e.SettledDate.Format(time.DateOnly) == date {
		again := *e
		again.SettledFile, again.SettledLine, again.SettledDate = nil, nil, nil
		v := classifyIn("", "", l, &again, false, ans, feeBPS)
		if v.Outcome == OutcomeMatched {
			v.Outcome = outcomeSettledBefore
		}
		return v
	}
	if l.Malformed != "" {
		return mismatch(contracts.MismatchMalformedLine, l.Malformed, 0)
	}
	if e == nil {
		if l.RecordType != RecordCharge {
			return mismatch(contracts.MismatchUnknownReference,
				fmt.Sprintf("the ledger holds no %s %s", l.RecordType, l.PSPReference), 0)
		}
		switch {
		case ans == nil || !ans.found:
			return mismatch(contracts.MismatchUnknownReference,
				fmt.Sprintf("neither the ledger nor the PSP knows charge %s", l.PSPReference), 0)
		case ans.status != "succeeded":
			return mismatch(contracts.MismatchUnknownReference,
				fmt.Sprintf("the file settles charge %s but the PSP reports it %s", l.PSPReference, ans.status), 0)
		case uuid.Validate(ans.merchantReference) != nil:
			// Not a checkout of paypipe's: payment could not apply it.
			return mismatch(contracts.MismatchUnknownReference,
				fmt.Sprintf("the PSP knows charge %s under merchant reference %q, which is no paypipe checkout", l.PSPReference, ans.merchantReference), 0)
		case ans.amountMinor != l.GrossMinor || ans.currency != l.Currency:
			return mismatch(contracts.MismatchUnknownReference,
				fmt.Sprintf("the file settles charge %s as %s %d but the PSP reports %s %d",
					l.PSPReference, l.Currency, l.GrossMinor, ans.currency, ans.amountMinor), 0)
		}
		return mismatch(contracts.MismatchMissingCapture,
			fmt.Sprintf("the PSP confirmed charge %s (%s %d) succeeded; the ledger has no capture", l.PSPReference, l.Currency, l.GrossMinor), 0)
	}
	if seenInChunk || e.SettledFile != nil || e.Parked {
		where := "an earlier line of this file"
		if e.SettledFile != nil && e.SettledLine != nil {
			where = fmt.Sprintf("line %d of file %.12s", *e.SettledLine, *e.SettledFile)
		} else if e.Parked {
			where = "a line parked before (awaiting its capture)"
		}
		return mismatch(contracts.MismatchDuplicateLine, fmt.Sprintf("%s was already settled by %s", l.PSPReference, where), e.GrossMinor)
	}
	if e.RecordType != l.RecordType {
		return mismatch(contracts.MismatchUnknownReference,
			fmt.Sprintf("the file says %s %s, the ledger knows it as a %s", l.RecordType, l.PSPReference, e.RecordType), e.GrossMinor)
	}
	if e.Currency != l.Currency {
		return mismatch(contracts.MismatchCurrency,
			fmt.Sprintf("the file settles %s in %s, the ledger holds %s", l.PSPReference, l.Currency, e.Currency), e.GrossMinor)
	}
	if e.GrossMinor != l.GrossMinor {
		return mismatch(contracts.MismatchAmount,
			fmt.Sprintf("the file settles %s for %d, the ledger holds %d (difference %d)", l.PSPReference, l.GrossMinor, e.GrossMinor, l.GrossMinor-e.GrossMinor), e.GrossMinor)
	}
	want := int64(0)
	if l.RecordType == RecordCharge {
		f, err := money.Fee(l.GrossMinor, feeBPS)
		if err != nil {
			return mismatch(contracts.MismatchFee, "fee: "+err.Error(), e.GrossMinor)
		}
		want = f
	}
	if l.FeeMinor != want {
		return mismatch(contracts.MismatchFee,
			fmt.Sprintf("the PSP took a fee of %d on %s, the contract (%d bps) says %d", l.FeeMinor, l.PSPReference, feeBPS, want), e.GrossMinor)
	}
	return verdict{Outcome: OutcomeMatched, Ledger: e.GrossMinor}
}
