package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
)

// ErrInvalidEvent is wrapped (with retry.Permanent) by the projection's
// refusals: events it can never apply go to the DLQ.
var ErrInvalidEvent = errors.New("reconciler: invalid event")

// errRaced asks for a redelivery: the row a concurrent transaction created
// is still not visible after waiting for it (it should be; the redelivery
// is the safe answer if not).
var errRaced = errors.New("reconciler: expected row inserted concurrently; retrying")

// Consumers returns the reconciler's consumers. Run them on a Runner whose
// Store is Store.
func (r *Reconciler) Consumers() []outbox.ConsumerSpec {
	return []outbox.ConsumerSpec{
		{Name: contracts.ReconLedgerConsumer, Stream: contracts.StreamLedger, Handler: r.entryPosted},
	}
}

// recordTypeOf maps a journal entry kind to the settlement line it expects
// and the sign of its gross in the file; other kinds settle nothing.
func recordTypeOf(kind string) (string, int64, bool) {
	switch kind {
	case contracts.EntryOrderCaptured:
		return RecordCharge, 1, true
	case contracts.EntryOrderRefunded:
		return RecordRefund, -1, true
	case contracts.EntryPayoutPaid:
		return RecordPayout, -1, true
	}
	return "", 0, false
}

// entryPosted projects ledger.entry.posted onto recon.expected. The several
// order entries of one checkout carry the same PSP reference and gross and
// upsert one row (posted_at is the first). Idempotent by the row's key;
// out-of-order entries of one reference converge on the same row. If the
// settlement file came first (a parked missing_capture line), the line is
// settled here, in this transaction.
func (r *Reconciler) entryPosted(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if want := contracts.TypeOf(contracts.SubjectLedgerEntryPosted); d.Type != want {
		return retry.Permanent(fmt.Errorf("%w: message %s: type %q, want %q", ErrInvalidEvent, d.MsgID, d.Type, want))
	}
	var ev contracts.LedgerEntryPosted
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return retry.Permanent(fmt.Errorf("%w: message %s: %w", ErrInvalidEvent, d.MsgID, err))
	}
	rt, sign, ok := recordTypeOf(ev.Kind)
	if !ok || ev.PSPReference == "" {
		return nil
	}
	if ev.PSPAmountMinor <= 0 || len(ev.PSPReference) > 255 || len(ev.Currency) != 3 || ev.PostedAt.IsZero() {
		err := fmt.Errorf("%w: entry %s (%s): psp_reference %q, psp_amount_minor %d, currency %q, posted_at %v: the reconciler cannot expect it",
			ErrInvalidEvent, ev.ExternalID, ev.Kind, ev.PSPReference, ev.PSPAmountMinor, ev.Currency, ev.PostedAt)
		r.log.ErrorContext(ctx, "rejected ledger.entry.posted", "msg_id", d.MsgID, "err", err)
		return retry.Permanent(err)
	}
	gross := sign * ev.PSPAmountMinor
	// Two entries of one checkout may race to create the row. Under READ
	// COMMITTED the loser's INSERT waits for the winner's commit and then
	// inserts nothing; its next statement sees the committed row, so one
	// more pass applies the entry to it instead of asking for a redelivery.
	var cur *expectedRow
	for attempt := 0; ; attempt++ {
		rows, err := lockExpected(ctx, tx, []string{ev.PSPReference})
		if err != nil {
			return err
		}
		if cur = rows[ev.PSPReference]; cur != nil {
			break
		}
		if attempt > 0 {
			return errRaced
		}
		tag, err := tx.Exec(ctx, `INSERT INTO recon.expected (psp_reference, record_type, reference, currency, gross_minor, posted_at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (psp_reference) DO NOTHING`,
			ev.PSPReference, rt, ev.Reference, ev.Currency, gross, ev.PostedAt)
		if err != nil {
			return fmt.Errorf("reconciler: project entry %s: %w", ev.ExternalID, err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
	}
	if cur.PostedAt != nil {
		if cur.RecordType != rt || cur.Currency != ev.Currency || cur.GrossMinor != gross {
			err := fmt.Errorf("%w: entry %s says %s %s %d for %s, an earlier entry said %s %s %d",
				ErrInvalidEvent, ev.ExternalID, rt, ev.Currency, gross, ev.PSPReference, cur.RecordType, cur.Currency, cur.GrossMinor)
			r.log.ErrorContext(ctx, "rejected ledger.entry.posted", "msg_id", d.MsgID, "err", err)
			return retry.Permanent(err)
		}
		_, err := tx.Exec(ctx, `UPDATE recon.expected SET posted_at = least(posted_at, $2) WHERE psp_reference = $1`,
			ev.PSPReference, ev.PostedAt)
		if err != nil {
			return fmt.Errorf("reconciler: project entry %s: %w", ev.ExternalID, err)
		}
		return nil
	}
	return r.settleParked(ctx, tx, ev, rt, gross)
}

// settleParked gives a parked row its ledger facts and settles (or
// classifies) the line that waited for them.
func (r *Reconciler) settleParked(ctx context.Context, tx pgx.Tx, ev contracts.LedgerEntryPosted, rt string, gross int64) error {
	var raw []byte
	// The row is locked (lockExpected): read the parked line, then clear it.
	err := tx.QueryRow(ctx, `UPDATE recon.expected e SET record_type = $2, reference = $3, currency = $4, gross_minor = $5,
  posted_at = $6, parked = NULL FROM recon.expected old
WHERE e.psp_reference = $1 AND old.psp_reference = $1 RETURNING old.parked`,
		ev.PSPReference, rt, ev.Reference, ev.Currency, gross, ev.PostedAt).Scan(&raw)
	if err != nil {
		return fmt.Errorf("reconciler: project entry %s: %w", ev.ExternalID, err)
	}
	var p parkedLine
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("reconciler: parked line of %s: %w", ev.PSPReference, err)
	}
	now := r.cfg.Now().UTC()
	e := &expectedRow{PSPReference: ev.PSPReference, RecordType: rt, Reference: ev.Reference, Currency: ev.Currency,
		GrossMinor: gross, PostedAt: &ev.PostedAt}
	v := classify(&p.Line, e, false, nil, r.cfg.PSPFeeBPS)
	var msgs []*outbox.Message
	resolution, note := "captured", fmt.Sprintf("the capture was posted (%s); the parked line %d settled", ev.ExternalID, p.No)
	if v.Outcome == OutcomeMatched {
		tag, err := tx.Exec(ctx, `INSERT INTO recon.settlements (psp_reference, file_id, line_no, settlement_date)
VALUES ($1, $2, $3, $4) ON CONFLICT (psp_reference) DO NOTHING`, ev.PSPReference, p.FileID, p.No, p.SettlementDate)
		if err != nil {
			return fmt.Errorf("reconciler: settle parked line of %s: %w", ev.PSPReference, err)
		}
		if tag.RowsAffected() == 1 {
			id := idFor("batch", p.FileID, "parked", strconv.FormatInt(p.No, 10), p.Currency)
			b := contracts.BatchSettled{BatchID: id.String(), SettlementDate: p.SettlementDate, FileID: p.FileID,
				Currency: p.Currency, Lines: 1, ChargesGrossMinor: p.GrossMinor, FeesMinor: p.FeeMinor, SettledAt: now}
			m, err := newMessage(contracts.SubjectReconBatchSettled, b.BatchID, b)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		} else {
			// Cannot happen while runs classify a parked reference as a
			// duplicate; if it does, the movement is posted once, not twice.
			r.log.ErrorContext(ctx, "parked line's reference was settled by another line; not posting it twice",
				"psp_reference", ev.PSPReference, "line", p.No, "file_id", p.FileID)
		}
	} else {
		// The capture arrived but differs from the line: the capture is no
		// longer missing; the difference is a mismatch of its own.
		resolution = "captured_with_difference"
		note = fmt.Sprintf("the capture was posted (%s) but differs from parked line %d: %s", ev.ExternalID, p.No, v.Outcome)
		runID, _ := uuid.Parse(p.RunID)
		run := &runRow{id: runID, date: p.SettlementDate, fileID: p.FileID}
		key := v.Outcome + "|" + ev.PSPReference + "|" + p.SettlementDate
		evd, _ := json.Marshal(map[string]any{"file_id": p.FileID, "line": p.Line, "ledger_gross_minor": gross})
		mm := chunkMismatch{id: idFor("mismatch", key), key: key, class: v.Outcome, line: &p.Line, v: v, evidence: evd}
		ins, err := insertMismatches(ctx, tx, run, []chunkMismatch{mm}, now)
		if err != nil {
			return err
		}
		if ins[mm.id] {
			m, err := newMessage(contracts.SubjectReconMismatchFound, mm.id.String(), foundEvent(run, mm, now))
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
	}
	res, err := resolveOpen(ctx, tx, []string{ev.PSPReference}, contracts.MismatchMissingCapture, resolution, note, now)
	if err != nil {
		return err
	}
	msgs = append(msgs, res...)
	if err := writeMessages(ctx, tx, msgs); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "parked settlement line met its capture", "psp_reference", ev.PSPReference,
		"outcome", v.Outcome, "line", p.No, "file_id", p.FileID[:min(12, len(p.FileID))], "at", now.Format(time.RFC3339))
	return nil
}
