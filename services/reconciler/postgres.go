package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/wallet"
)

// lockExpected loads and locks the expected rows of refs (sorted: one lock
// order for every transaction), in one query.
func lockExpected(ctx context.Context, tx pgx.Tx, refs []string) (map[string]*expectedRow, error) {
	return loadExpected(ctx, tx, refs, true)
}

// querier is a transaction or a pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// loadExpected loads the expected rows of refs with their settlement, if
// any, locking the expected rows if lock.
func loadExpected(ctx context.Context, tx querier, refs []string, lock bool) (map[string]*expectedRow, error) {
	out := make(map[string]*expectedRow, len(refs))
	if len(refs) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT e.psp_reference, e.record_type, e.reference, e.currency, e.gross_minor, e.posted_at,
  s.file_id, s.line_no, s.settlement_date, e.parked IS NOT NULL
FROM recon.expected e LEFT JOIN recon.settlements s ON s.psp_reference = e.psp_reference
WHERE e.psp_reference = ANY($1)`+forUpdate(lock), refs)
	if err != nil {
		return nil, fmt.Errorf("reconciler: load expected rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e := &expectedRow{}
		if err := rows.Scan(&e.PSPReference, &e.RecordType, &e.Reference, &e.Currency, &e.GrossMinor, &e.PostedAt,
			&e.SettledFile, &e.SettledLine, &e.SettledDate, &e.Parked); err != nil {
			return nil, fmt.Errorf("reconciler: load expected rows: %w", err)
		}
		out[e.PSPReference] = e
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reconciler: load expected rows: %w", err)
	}
	return out, nil
}

// insertMismatches inserts mms in one statement; a key already stored (an
// earlier run found the same fact) is skipped. It returns the ids inserted.
func insertMismatches(ctx context.Context, tx pgx.Tx, run *runRow, mms []chunkMismatch, now time.Time) (map[uuid.UUID]bool, error) {
	ins := map[uuid.UUID]bool{}
	if len(mms) == 0 {
		return ins, nil
	}
	n := len(mms)
	ids, keys, classes, queues := make([]uuid.UUID, n), make([]string, n), make([]string, n), make([]string, n)
	lineNos := make([]*int64, n)
	rtypes, refs, mrefs, sellers, curs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	fileAmt, ledAmt := make([]int64, n), make([]int64, n)
	details, reacts, evid := make([]string, n), make([]string, n), make([]string, n)
	for i, mm := range mms {
		ids[i], keys[i], classes[i], queues[i] = mm.id, mm.key, mm.class, contracts.MismatchQueue(mm.class)
		if l := mm.line; l != nil {
			no := l.No
			lineNos[i] = &no
			rtypes[i], refs[i], mrefs[i], curs[i], fileAmt[i] = l.RecordType, l.PSPReference, l.MerchantReference, l.Currency, l.GrossMinor
		}
		ledAmt[i], details[i], reacts[i], evid[i] = mm.v.Ledger, mm.v.Detail, mm.v.Reaction, string(mm.evidence)
		if evid[i] == "" {
			evid[i] = "{}"
		}
	}
	for i, mm := range mms {
		if mm.sellerID != "" {
			sellers[i] = mm.sellerID
		}
		if mm.currency != "" {
			curs[i] = mm.currency
		}
		if mm.ref != "" {
			refs[i] = mm.ref
		}
		if mm.fileAmount != 0 {
			fileAmt[i] = mm.fileAmount
		}
	}
	rows, err := tx.Query(ctx, `INSERT INTO recon.mismatches (id, key, run_id, settlement_date, class, queue, line_no,
  record_type, psp_reference, merchant_reference, seller_id, currency, file_amount_minor, ledger_amount_minor,
  detail, reaction, evidence, found_at)
SELECT u.id, u.key, $1, $2, u.class, u.queue, u.line_no, u.rt, u.ref, u.mref, u.seller, u.cur, u.fa, u.la,
  u.detail, u.reaction, u.evidence, $3
FROM unnest($4::uuid[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[],
  $12::text[], $13::text[], $14::bigint[], $15::bigint[], $16::text[], $17::text[], $18::jsonb[])
  AS u(id, key, class, queue, line_no, rt, ref, mref, seller, cur, fa, la, detail, reaction, evidence)
ON CONFLICT (key) DO NOTHING RETURNING id`,
		run.id, run.date, now, ids, keys, classes, queues, lineNos, rtypes, refs, mrefs, sellers, curs, fileAmt, ledAmt,
		details, reacts, evid)
	if err != nil {
		return nil, fmt.Errorf("reconciler: insert mismatches: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("reconciler: insert mismatches: %w", err)
	}
	for _, id := range got {
		ins[id] = true
	}
	return ins, nil
}

// resolveOpen resolves the open mismatches of class on refs and returns
// their recon.mismatch.resolved events.
func resolveOpen(ctx context.Context, tx pgx.Tx, refs []string, class, resolution, note string, now time.Time) ([]*outbox.Message, error) {
	rows, err := tx.Query(ctx, `UPDATE recon.mismatches SET status = 'resolved', resolution = $3, resolved_by = 'reconciler',
  resolved_at = $4, note = $5
WHERE psp_reference = ANY($1) AND class = $2 AND status = 'open' RETURNING id, queue`, refs, class, resolution, now, note)
	if err != nil {
		return nil, fmt.Errorf("reconciler: resolve %s: %w", class, err)
	}
	type res struct {
		id    uuid.UUID
		queue string
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (res, error) {
		var x res
		return x, r.Scan(&x.id, &x.queue)
	})
	if err != nil {
		return nil, fmt.Errorf("reconciler: resolve %s: %w", class, err)
	}
	msgs := make([]*outbox.Message, 0, len(got))
	for _, g := range got {
		m, err := newMessage(contracts.SubjectReconMismatchResolved, g.id.String(), contracts.MismatchResolved{
			MismatchID: g.id.String(), Class: class, Queue: g.queue, Resolution: resolution, ResolvedBy: "reconciler",
			Note: note, ResolvedAt: now})
		if err != nil {
			return nil, err
		}
		m.AggregateVersion = 2
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// advanceRun stores the run's progress, compare-and-set on the cursor: a
// second writer of the same run (a lost lock) fails instead of applying a
// chunk twice.
func advanceRun(ctx context.Context, tx pgx.Tx, run *runRow, cursor int64, phase, ledgerAfter string, st *runState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("reconciler: encode run state: %w", err)
	}
	tag, err := tx.Exec(ctx, `UPDATE recon.runs SET cursor_line = $2, phase = $3, ledger_after = $4, state = $5,
  updated_at = clock_timestamp(), last_error = NULL
WHERE id = $1 AND status = 'running' AND cursor_line = $6 AND phase = $7 AND ledger_after = $8`,
		run.id, cursor, phase, ledgerAfter, b, run.cursor, run.phase, run.ledgerAfter)
	if err != nil {
		return fmt.Errorf("reconciler: advance run: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: run %s moved under this one", ErrRunInProgress, run.id)
	}
	return nil
}

// ledgerPass walks the ledger movements posted before the end of the day
// that no file settled, in bounded pages (one transaction each, cursor
// committed with it): a new one becomes settles_later; a settles_later
// older than the grace period is escalated to missing_in_settlement.
func (r *Reconciler) ledgerPass(ctx context.Context, run *runRow, day time.Time) error {
	end := day.AddDate(0, 0, 1)
	graceBefore := day.AddDate(0, 0, -r.cfg.GraceDays)
	for {
		done, err := r.ledgerPage(ctx, run, end, graceBefore)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func (r *Reconciler) ledgerPage(ctx context.Context, run *runRow, end, graceBefore time.Time) (done bool, err error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("reconciler: begin ledger pass: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	rows, err := tx.Query(ctx, `SELECT e.psp_reference, e.record_type, e.reference, e.currency, e.gross_minor, e.posted_at,
  sl.id, sl.settlement_date,
  EXISTS (SELECT 1 FROM recon.mismatches o WHERE o.psp_reference = e.psp_reference AND o.status = 'open' AND o.class <> $4)
FROM recon.expected e
LEFT JOIN LATERAL (SELECT m.id, m.settlement_date FROM recon.mismatches m
  WHERE m.psp_reference = e.psp_reference AND m.status = 'open' AND m.class = $4 ORDER BY m.found_at LIMIT 1) sl ON true
WHERE e.posted_at IS NOT NULL AND e.posted_at < $1 AND e.psp_reference > $2
  AND NOT EXISTS (SELECT 1 FROM recon.settlements s WHERE s.psp_reference = e.psp_reference)
ORDER BY e.psp_reference LIMIT $3 FOR UPDATE OF e`, end, run.ledgerAfter, r.cfg.ChunkLines, contracts.MismatchSettlesLater)
	if err != nil {
		return false, fmt.Errorf("reconciler: ledger pass: %w", err)
	}
	type unsettled struct {
		e       expectedRow
		slID    *uuid.UUID
		slDate  *time.Time
		blocked bool
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (unsettled, error) {
		var u unsettled
		err := row.Scan(&u.e.PSPReference, &u.e.RecordType, &u.e.Reference, &u.e.Currency, &u.e.GrossMinor, &u.e.PostedAt,
			&u.slID, &u.slDate, &u.blocked)
		return u, err
	})
	if err != nil {
		return false, fmt.Errorf("reconciler: ledger pass: %w", err)
	}
	st := cloneState(run.state)
	now := r.cfg.Now().UTC()
	var mms []chunkMismatch
	var escalate []string
	for _, u := range got {
		e := u.e
		switch {
		case u.blocked:
			// Another open mismatch (amount, fee, currency, escalated) holds it.
			continue
		case u.slID == nil:
			mms = append(mms, ledgerMismatch(run, contracts.MismatchSettlesLater, e,
				fmt.Sprintf("the ledger holds %s %s (%s %d, posted %s) and no settlement file has settled it yet",
					e.RecordType, e.PSPReference, e.Currency, e.GrossMinor, e.PostedAt.UTC().Format(time.RFC3339))))
			st.Mismatches[contracts.MismatchSettlesLater]++
		case u.slDate.Before(graceBefore):
			escalate = append(escalate, e.PSPReference)
			mms = append(mms, ledgerMismatch(run, contracts.MismatchMissingInSettlement, e,
				fmt.Sprintf("%s %s (%s %d) is still not settled %d day(s) after %s", e.RecordType, e.PSPReference,
					e.Currency, e.GrossMinor, r.cfg.GraceDays, u.slDate.Format(time.DateOnly))))
			st.Mismatches[contracts.MismatchMissingInSettlement]++
			st.Escalated++
		default:
			st.CarriedOver++
		}
	}
	var msgs []*outbox.Message
	if len(escalate) > 0 {
		res, err := resolveOpen(ctx, tx, escalate, contracts.MismatchSettlesLater, "escalated",
			fmt.Sprintf("not settled within %d day(s): escalated to %s on %s", r.cfg.GraceDays, contracts.MismatchMissingInSettlement, run.date), now)
		if err != nil {
			return false, err
		}
		msgs = append(msgs, res...)
	}
	inserted, err := insertMismatches(ctx, tx, run, mms, now)
	if err != nil {
		return false, err
	}
	for _, mm := range mms {
		if inserted[mm.id] {
			m, err := newMessage(contracts.SubjectReconMismatchFound, mm.id.String(), foundEvent(run, mm, now))
			if err != nil {
				return false, err
			}
			msgs = append(msgs, m)
		}
	}
	if err := writeMessages(ctx, tx, msgs); err != nil {
		return false, err
	}
	after, phase := run.ledgerAfter, "ledger"
	if len(got) > 0 {
		after = got[len(got)-1].e.PSPReference
	}
	if len(got) < r.cfg.ChunkLines {
		phase = "done"
	}
	if err := advanceRun(ctx, tx, run, run.cursor, phase, after, st); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("reconciler: commit ledger pass: %w", err)
	}
	run.ledgerAfter, run.phase, run.state = after, phase, st
	for _, mm := range mms {
		if inserted[mm.id] {
			r.m.mismatches.WithLabelValues(mm.class).Inc()
		}
	}
	return phase == "done", nil
}

// ledgerMismatch is a mismatch about a ledger movement (no file line).
func ledgerMismatch(run *runRow, class string, e expectedRow, detail string) chunkMismatch {
	key := class + "|" + e.PSPReference + "|" + run.date
	ev, _ := json.Marshal(map[string]any{"ledger": map[string]any{"psp_reference": e.PSPReference, "record_type": e.RecordType,
		"reference": e.Reference, "currency": e.Currency, "gross_minor": e.GrossMinor, "posted_at": e.PostedAt}})
	return chunkMismatch{id: idFor("mismatch", key), key: key, class: class,
		line:     &Line{RecordType: e.RecordType, PSPReference: e.PSPReference, MerchantReference: e.Reference, Currency: e.Currency},
		v:        verdict{Outcome: class, Detail: detail, Reaction: reactions[class], Ledger: e.GrossMinor},
		evidence: ev}
}

// complete runs the wallet ↔ ledger check, records its drifts, stores the
// summary and emits recon.run.completed, in one transaction.
func (r *Reconciler) complete(ctx context.Context, run *runRow) (Summary, error) {
	var drifts []wallet.Drift
	if !r.cfg.SkipWalletCheck {
		check := r.hooks.walletCheck
		if check == nil {
			check = func(ctx context.Context) ([]wallet.Drift, error) { return wallet.CheckAgainstLedger(ctx, r.pool) }
		}
		var err error
		if drifts, err = check(ctx); err != nil {
			return Summary{}, fmt.Errorf("reconciler: wallet check: %w", err)
		}
	}
	now := r.cfg.Now().UTC()
	st := cloneState(run.state)
	var mms []chunkMismatch
	for _, d := range drifts {
		key := contracts.MismatchWalletDrift + "|" + d.SellerID + "|" + d.Currency + "|" + run.date
		ev, _ := json.Marshal(map[string]any{"drift": d})
		detail := fmt.Sprintf("seller %s %s: wallet pending+available %d, ledger seller_payable %d (difference %d)",
			d.SellerID, d.Currency, d.WalletMinor, d.LedgerMinor, d.WalletMinor-d.LedgerMinor)
		if d.Missing != "" {
			detail += "; no " + d.Missing + " record"
		}
		mms = append(mms, chunkMismatch{id: idFor("mismatch", key), key: key, class: contracts.MismatchWalletDrift,
			sellerID: d.SellerID, currency: d.Currency, fileAmount: d.WalletMinor,
			v:        verdict{Outcome: contracts.MismatchWalletDrift, Detail: detail, Reaction: reactions[contracts.MismatchWalletDrift], Ledger: d.LedgerMinor},
			evidence: ev})
		st.Mismatches[contracts.MismatchWalletDrift]++
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return Summary{}, fmt.Errorf("reconciler: begin completion: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	inserted, err := insertMismatches(ctx, tx, run, mms, now)
	if err != nil {
		return Summary{}, err
	}
	var msgs []*outbox.Message
	for _, mm := range mms {
		if inserted[mm.id] {
			ev := foundEvent(run, mm, now)
			ev.Currency, ev.FileAmountMinor = mm.currency, mm.fileAmount
			m, err := newMessage(contracts.SubjectReconMismatchFound, mm.id.String(), ev)
			if err != nil {
				return Summary{}, err
			}
			msgs = append(msgs, m)
		}
	}
	sum := st.summary(run, now)
	st.Summary = &sum
	m, err := newMessage(contracts.SubjectReconRunCompleted, run.id.String(), contracts.RunCompleted{
		RunID: sum.RunID, SettlementDate: sum.SettlementDate, FileID: sum.FileID, Lines: sum.Lines, Matched: sum.Matched,
		Mismatches: sum.Mismatches, Totals: sum.Totals, CompletedAt: now})
	if err != nil {
		return Summary{}, err
	}
	msgs = append(msgs, m)
	if err := writeMessages(ctx, tx, msgs); err != nil {
		return Summary{}, err
	}
	b, _ := json.Marshal(st)
	tag, err := tx.Exec(ctx, `UPDATE recon.runs SET status = 'completed', state = $2, completed_at = $3,
  updated_at = clock_timestamp(), last_error = NULL WHERE id = $1 AND status = 'running' AND phase = 'done'`, run.id, b, now)
	if err != nil {
		return Summary{}, fmt.Errorf("reconciler: complete run: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return Summary{}, fmt.Errorf("%w: run %s moved under this one", ErrRunInProgress, run.id)
	}
	if err := tx.Commit(ctx); err != nil {
		return Summary{}, fmt.Errorf("reconciler: commit completion: %w", err)
	}
	for _, mm := range mms {
		if inserted[mm.id] {
			r.m.mismatches.WithLabelValues(mm.class).Inc()
		}
	}
	run.status, run.state = "completed", st
	return sum, nil
}

// Mismatch is one row of the mismatch queues.
type Mismatch struct {
	ID                string          `json:"id"`
	RunID             string          `json:"run_id"`
	SettlementDate    string          `json:"settlement_date"`
	Class             string          `json:"class"`
	Queue             string          `json:"queue"`
	Status            string          `json:"status"`
	LineNo            *int64          `json:"line_no,omitempty"`
	RecordType        string          `json:"record_type,omitempty"`
	PSPReference      string          `json:"psp_reference,omitempty"`
	MerchantReference string          `json:"merchant_reference,omitempty"`
	SellerID          string          `json:"seller_id,omitempty"`
	Currency          string          `json:"currency,omitempty"`
	FileAmountMinor   int64           `json:"file_amount_minor"`
	LedgerAmountMinor int64           `json:"ledger_amount_minor"`
	Detail            string          `json:"detail"`
	Reaction          string          `json:"reaction"`
	Evidence          json.RawMessage `json:"evidence"`
	FoundAt           time.Time       `json:"found_at"`
	Resolution        string          `json:"resolution,omitempty"`
	ResolvedBy        string          `json:"resolved_by,omitempty"`
	ResolvedAt        *time.Time      `json:"resolved_at,omitempty"`
	Note              string          `json:"note,omitempty"`
}

// Mismatch statuses.
const (
	StatusOpen     = "open"
	StatusResolved = "resolved"
)

// Filter selects mismatches; zero fields select everything.
type Filter struct {
	Date   string // YYYY-MM-DD: found by the runs of that settlement date
	Queue  string
	Class  string
	Status string // open, resolved or "" (all)
	Limit  int    // default 100, at most MaxListLimit
}

// MaxListLimit bounds one listing.
const MaxListLimit = 10000

const mismatchCols = `id, run_id, settlement_date::text, class, queue, status, line_no, record_type, psp_reference,
  merchant_reference, seller_id, currency, file_amount_minor, ledger_amount_minor, detail, reaction, evidence, found_at,
  coalesce(resolution, ''), coalesce(resolved_by, ''), resolved_at, coalesce(note, '')`

func scanMismatch(row pgx.CollectableRow) (Mismatch, error) {
	var m Mismatch
	var id, run uuid.UUID
	err := row.Scan(&id, &run, &m.SettlementDate, &m.Class, &m.Queue, &m.Status, &m.LineNo, &m.RecordType, &m.PSPReference,
		&m.MerchantReference, &m.SellerID, &m.Currency, &m.FileAmountMinor, &m.LedgerAmountMinor, &m.Detail, &m.Reaction,
		&m.Evidence, &m.FoundAt, &m.Resolution, &m.ResolvedBy, &m.ResolvedAt, &m.Note)
	m.ID, m.RunID = id.String(), run.String()
	return m, err
}

// Mismatches lists mismatches, oldest first.
func (r *Reconciler) Mismatches(ctx context.Context, f Filter) ([]Mismatch, error) {
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 0 || f.Limit > MaxListLimit {
		return nil, fmt.Errorf("%w: limit %d: want 1 to %d", ErrInvalidRequest, f.Limit, MaxListLimit)
	}
	if f.Status != "" && f.Status != StatusOpen && f.Status != StatusResolved {
		return nil, fmt.Errorf("%w: status %q: want open, resolved or empty", ErrInvalidRequest, f.Status)
	}
	if f.Queue != "" && f.Queue != contracts.QueueAuto && f.Queue != contracts.QueueFinance && f.Queue != contracts.QueueInvestigation {
		return nil, fmt.Errorf("%w: queue %q: want auto, finance or investigation", ErrInvalidRequest, f.Queue)
	}
	var date *string
	if f.Date != "" {
		if _, err := time.Parse(time.DateOnly, f.Date); err != nil {
			return nil, fmt.Errorf("%w: date %q: want YYYY-MM-DD", ErrInvalidRequest, f.Date)
		}
		date = &f.Date
	}
	rows, err := r.pool.Query(ctx, `SELECT `+mismatchCols+` FROM recon.mismatches
WHERE ($1::date IS NULL OR settlement_date = $1::date) AND ($2 = '' OR queue = $2) AND ($3 = '' OR class = $3)
  AND ($4 = '' OR status = $4)
ORDER BY found_at, line_no NULLS LAST, id LIMIT $5`, date, f.Queue, f.Class, f.Status, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("reconciler: list mismatches: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanMismatch)
	if err != nil {
		return nil, fmt.Errorf("reconciler: list mismatches: %w", err)
	}
	return out, nil
}

// Resolve closes an open mismatch on a person's word (any queue, the auto
// one too: the decision is recorded) and emits recon.mismatch.resolved.
func (r *Reconciler) Resolve(ctx context.Context, id, by, note string) (Mismatch, error) {
	mid, err := uuid.Parse(id)
	if err != nil {
		return Mismatch{}, fmt.Errorf("%w: mismatch id %q: want a UUID", ErrInvalidRequest, id)
	}
	if by == "" || note == "" {
		return Mismatch{}, fmt.Errorf("%w: a resolution needs who (by) and why (note)", ErrInvalidRequest)
	}
	now := r.cfg.Now().UTC()
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return Mismatch{}, fmt.Errorf("reconciler: resolve: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	rows, err := tx.Query(ctx, `UPDATE recon.mismatches SET status = 'resolved', resolution = 'manual', resolved_by = $2,
  resolved_at = $3, note = $4 WHERE id = $1 AND status = 'open' RETURNING `+mismatchCols, mid, by, now, note)
	if err != nil {
		return Mismatch{}, fmt.Errorf("reconciler: resolve: %w", err)
	}
	got, err := pgx.CollectRows(rows, scanMismatch)
	if err != nil {
		return Mismatch{}, fmt.Errorf("reconciler: resolve: %w", err)
	}
	if len(got) == 0 {
		var status string
		err := tx.QueryRow(ctx, `SELECT status FROM recon.mismatches WHERE id = $1`, mid).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return Mismatch{}, fmt.Errorf("%w: mismatch %s", ErrNotFound, id)
		}
		if err != nil {
			return Mismatch{}, fmt.Errorf("reconciler: resolve: %w", err)
		}
		return Mismatch{}, fmt.Errorf("%w: %s", ErrAlreadyResolved, id)
	}
	m := got[0]
	msg, err := newMessage(contracts.SubjectReconMismatchResolved, m.ID, contracts.MismatchResolved{
		MismatchID: m.ID, Class: m.Class, Queue: m.Queue, Resolution: "manual", ResolvedBy: by, Note: note, ResolvedAt: now})
	if err != nil {
		return Mismatch{}, err
	}
	msg.AggregateVersion = 2
	if err := Store.Write(ctx, tx, msg); err != nil {
		return Mismatch{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Mismatch{}, fmt.Errorf("reconciler: resolve: commit: %w", err)
	}
	r.refreshQueueDepth(ctx)
	return m, nil
}

// Report returns the summary of the latest completed run of date.
func (r *Reconciler) Report(ctx context.Context, date string) (Summary, error) {
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return Summary{}, fmt.Errorf("%w: date %q: want YYYY-MM-DD", ErrInvalidRequest, date)
	}
	var raw []byte
	err := r.pool.QueryRow(ctx, `SELECT state FROM recon.runs WHERE settlement_date = $1 AND status = 'completed'
ORDER BY completed_at DESC LIMIT 1`, date).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return Summary{}, fmt.Errorf("%w: no completed run for %s", ErrNotFound, date)
	}
	if err != nil {
		return Summary{}, fmt.Errorf("reconciler: report: %w", err)
	}
	st := newRunState()
	if err := json.Unmarshal(raw, st); err != nil || st.Summary == nil {
		return Summary{}, fmt.Errorf("reconciler: report of %s: stored summary unreadable: %v", date, err)
	}
	return *st.Summary, nil
}

func forUpdate(lock bool) string {
	if lock {
		return " ORDER BY e.psp_reference FOR UPDATE OF e"
	}
	return ""
}
