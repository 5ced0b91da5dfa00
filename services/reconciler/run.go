package reconciler

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/psp"
)

// runRow is a run as stored.
type runRow struct {
	id          uuid.UUID
	date        string
	fileID      string
	status      string
	phase       string
	cursor      int64
	ledgerAfter string
	state       *runState
	startedAt   time.Time
}

// startRun returns the run of (date, fileID), creating it on first use.
func (r *Reconciler) startRun(ctx context.Context, date, fileID string) (*runRow, error) {
	id := idFor("run", date, fileID)
	st, _ := json.Marshal(newRunState())
	if _, err := r.pool.Exec(ctx, `INSERT INTO recon.runs (id, settlement_date, file_id, status, state)
VALUES ($1, $2, $3, 'running', $4) ON CONFLICT (settlement_date, file_id) DO UPDATE
SET attempts = runs.attempts + 1, updated_at = clock_timestamp() WHERE runs.status = 'running'`, id, date, fileID, st); err != nil {
		return nil, fmt.Errorf("reconciler: start run: %w", err)
	}
	run := &runRow{date: date, fileID: fileID}
	var raw []byte
	err := r.pool.QueryRow(ctx, `SELECT id, status, phase, cursor_line, ledger_after, state, started_at
FROM recon.runs WHERE settlement_date = $1 AND file_id = $2`, date, fileID).
		Scan(&run.id, &run.status, &run.phase, &run.cursor, &run.ledgerAfter, &raw, &run.startedAt)
	if err != nil {
		return nil, fmt.Errorf("reconciler: load run: %w", err)
	}
	run.state = newRunState()
	if err := json.Unmarshal(raw, run.state); err != nil {
		return nil, fmt.Errorf("reconciler: run %s: decode state: %w", run.id, err)
	}
	if run.status == "completed" && run.state.Summary == nil {
		return nil, fmt.Errorf("reconciler: run %s completed without a summary", run.id)
	}
	return run, nil
}

func (r *Reconciler) noteError(ctx context.Context, run *runRow, err error) {
	r.m.runFailures.Inc()
	r.log.ErrorContext(ctx, "reconciliation run stopped; running it again resumes after the last committed chunk",
		"run_id", run.id, "date", run.date, "cursor_line", run.cursor, "phase", run.phase, "err", err)
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = r.pool.Exec(uctx, `UPDATE recon.runs SET last_error = $2, updated_at = clock_timestamp() WHERE id = $1`,
		run.id, oneLine(err.Error(), 2000))
}

// fileChunk is one chunk of the file, read and looked up ahead.
type fileChunk struct {
	lines    []*Line
	bals     []*balance
	lastLine int64
	eof      bool
	refs     []string                // the chunk's distinct references, sorted
	known    map[string]*expectedRow // read outside the chunk's transaction: a hint
	err      error
}

// processFile streams the file from the run's cursor, one chunk per
// transaction. A reader goroutine reads, parses and looks up chunk k+1
// while chunk k classifies and commits; the hand-over is unbuffered, so
// memory holds at most two chunks, whatever the file's size.
func (r *Reconciler) processFile(ctx context.Context, run *runRow, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	defer f.Close()
	fr, err := newFileReader(bufio.NewReaderSize(f, 1<<16), run.date)
	if err != nil {
		return err
	}
	// Lines up to the cursor were committed by an earlier attempt (their
	// balances are in the stored state too): read past them.
	for fr.no < run.cursor {
		if _, _, err := fr.next(); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: the file ends at line %d, before the run's cursor %d: not the file the run started with", ErrBadFile, fr.no, run.cursor)
			}
			return err
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	chunks := make(chan fileChunk)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.readChunks(rctx, fr, chunks)
	}()
	// Stop the reader and wait for it before the file closes.
	defer func() { cancel(); <-done }()
	k := 0
	for {
		var c fileChunk
		select {
		case c = <-chunks:
		case <-ctx.Done():
			return ctx.Err()
		}
		if c.err != nil {
			return c.err
		}
		// Balances go into the state the chunk commits, never before.
		for _, bal := range c.bals {
			if bal.closing {
				run.state.Closing[bal.currency] = bal.minor
			} else {
				run.state.Opening[bal.currency] = bal.minor
			}
		}
		k++
		if r.hooks.chunk != nil {
			r.hooks.chunk(k, len(c.lines))
		}
		if err := r.commitChunk(ctx, run, c); err != nil {
			return err
		}
		if r.hooks.afterChunk != nil {
			if err := r.hooks.afterChunk(k); err != nil {
				return err
			}
		}
		if c.eof {
			return nil
		}
	}
}

// readChunks reads the file chunk by chunk and looks each chunk's
// references up (outside any transaction: commitChunk's insert of the
// settlements re-checks what matters) until EOF, an error or ctx's end.
// Each chunk gets fresh slices: the committer still holds the previous one.
func (r *Reconciler) readChunks(ctx context.Context, fr *fileReader, out chan<- fileChunk) {
	send := func(c fileChunk) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	k := 0
	for {
		clk := r.m.clock()
		c := fileChunk{lines: make([]*Line, 0, r.cfg.ChunkLines)}
		for len(c.lines) < r.cfg.ChunkLines {
			mv, bal, err := fr.next()
			if errors.Is(err, io.EOF) {
				c.eof = true
				break
			}
			if err != nil {
				send(fileChunk{err: err})
				return
			}
			if bal != nil {
				c.bals = append(c.bals, bal)
				continue
			}
			c.lines = append(c.lines, mv)
		}
		c.lastLine = fr.no
		c.refs = chunkRefs(c.lines)
		clk.lap("read")
		known, err := loadExpected(ctx, r.pool, c.refs, false)
		if err != nil {
			send(fileChunk{err: err})
			return
		}
		c.known = known
		clk.lap("lookup")
		k++
		if r.hooks.readAhead != nil {
			r.hooks.readAhead(k)
		}
		if !send(c) || c.eof {
			return
		}
	}
}

// chunkRefs returns the distinct references of lines, sorted (one lock
// order for every transaction).
func chunkRefs(lines []*Line) []string {
	refs := make([]string, 0, len(lines))
	seen := make(map[string]bool, len(lines))
	for _, l := range lines {
		if l.Malformed == "" && !seen[l.PSPReference] {
			seen[l.PSPReference] = true
			refs = append(refs, l.PSPReference)
		}
	}
	sort.Strings(refs)
	return refs
}

// chunkMismatch is a mismatch a chunk writes.
type chunkMismatch struct {
	id       uuid.UUID
	key      string
	class    string
	line     *Line
	v        verdict
	evidence []byte
	// For mismatches without a file line (wallet drift).
	sellerID, currency, ref string
	fileAmount              int64
}

// commitChunk reconciles a chunk in one transaction and advances the
// cursor to its last line. The first try classifies against the rows read
// ahead (c.known); the insert of the settlements is the check: a reference
// settled since (by the previous chunk, or a parked line) makes it come up
// short and the chunk is classified again against rows read inside the
// transaction. PSP look-ups happen before the transaction (never inside
// one); if the ledger learned a reference meanwhile, the chunk is simply
// classified again too.
func (r *Reconciler) commitChunk(ctx context.Context, run *runRow, c fileChunk) error {
	lines, refs, lastLine, eof := c.lines, c.refs, c.lastLine, c.eof
	known := c.known
	answers := map[string]*pspAnswer{}
	const maxTries = 4
	for try := 1; ; try++ {
		retryChunk, err := r.tryChunk(ctx, run, lines, refs, known, answers, lastLine, eof)
		known = nil // a retry reads inside its transaction
		if err != nil {
			return err
		}
		if !retryChunk {
			return nil
		}
		if try == maxTries {
			return fmt.Errorf("reconciler: chunk ending at line %d: the ledger kept changing under it %d times", lastLine, maxTries)
		}
	}
}

// tryChunk is one attempt of commitChunk; retry true asks for another
// (after PSP look-ups, or because a reference appeared meanwhile).
func (r *Reconciler) tryChunk(ctx context.Context, run *runRow, lines []*Line, refs []string, known map[string]*expectedRow,
	answers map[string]*pspAnswer, lastLine int64, eof bool) (retry bool, err error) {
	clk := r.m.clock()
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("reconciler: begin chunk: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op

	// No row locks on the read: the settlements insert re-checks "not
	// settled" (its unique key waits for a concurrent settler) and its
	// count must match, else the chunk starts over. Locking 5000 rows
	// first would write every tuple twice.
	if known == nil {
		if known, err = loadExpected(ctx, tx, refs, false); err != nil {
			return false, err
		}
		clk.lap("lookup")
	}
	var ask []string
	asked := map[string]bool{}
	for _, l := range lines {
		if l.Malformed == "" && l.RecordType == RecordCharge && known[l.PSPReference] == nil && answers[l.PSPReference] == nil && !asked[l.PSPReference] {
			asked[l.PSPReference] = true
			ask = append(ask, l.PSPReference)
		}
	}
	if len(ask) > 0 {
		_ = tx.Rollback(ctx)
		got, err := r.askPSP(ctx, ask)
		if err != nil {
			return false, err
		}
		for k, v := range got {
			answers[k] = v
		}
		return true, nil
	}

	st := cloneState(run.state)
	now := r.cfg.Now().UTC()
	var (
		settleRefs  []string
		settleLines []int64
		mms         []chunkMismatch
		parkRefs    []string
		parkRows    [][]byte
		parkLines   []*Line
		confirmed   []*outbox.Message
		inChunk     = make(map[string]bool, len(lines))
		mmKeys      = map[string]bool{}
		outcomes    = map[string]int64{}
	)
	type batchSum struct{ lines, charges, refunds, fees int64 }
	batches := map[string]*batchSum{}
	for _, l := range lines {
		st.Lines++
		v := classifyIn(run.date, run.fileID, l, known[l.PSPReference], inChunk[l.PSPReference], answers[l.PSPReference], r.cfg.PSPFeeBPS)
		// A line an earlier version of this day's file settled counts as
		// matched, and is not settled or posted again.
		settledBefore := v.Outcome == outcomeSettledBefore
		if settledBefore {
			v.Outcome = OutcomeMatched
		}
		if l.Malformed == "" {
			inChunk[l.PSPReference] = true
			t := st.totals(l.Currency)
			t.Lines++
			t.FileNetMinor += l.NetMinor
			if v.Outcome == OutcomeMatched {
				t.MatchedLines++
				t.MatchedGrossMinor += l.GrossMinor
			} else {
				t.MismatchedAbsMinor += abs64(l.GrossMinor)
			}
		}
		outcomes[v.Outcome]++
		if settledBefore {
			st.Matched++
			continue
		}
		if v.Outcome == OutcomeMatched {
			st.Matched++
			settleRefs = append(settleRefs, l.PSPReference)
			settleLines = append(settleLines, l.No)
			if l.RecordType != RecordPayout {
				b := batches[l.Currency]
				if b == nil {
					b = &batchSum{}
					batches[l.Currency] = b
				}
				b.lines++
				b.fees += l.FeeMinor
				if l.RecordType == RecordCharge {
					b.charges += l.GrossMinor
				} else {
					b.refunds += -l.GrossMinor
				}
			}
			continue
		}
		st.Mismatches[v.Outcome]++
		subject := l.PSPReference
		if l.Malformed != "" || subject == "" {
			subject = fmt.Sprintf("line:%s:%d", run.fileID[:16], l.No)
		}
		key := v.Outcome + "|" + subject + "|" + run.date
		if mmKeys[key] {
			continue
		}
		mmKeys[key] = true
		ev, _ := json.Marshal(map[string]any{"file_id": run.fileID, "line": l, "ledger_gross_minor": v.Ledger})
		mm := chunkMismatch{id: idFor("mismatch", key), key: key, class: v.Outcome, line: l, v: v, evidence: ev}
		mms = append(mms, mm)
		if v.Outcome == contracts.MismatchMissingCapture {
			a := answers[l.PSPReference]
			p, _ := json.Marshal(parkedLine{Line: *l, FileID: run.fileID, RunID: run.id.String(), MismatchID: mm.id.String()})
			parkRefs = append(parkRefs, l.PSPReference)
			parkRows = append(parkRows, p)
			parkLines = append(parkLines, l)
			checkout := a.merchantReference // a UUID: classify checked it
			msg, err := newMessage(contracts.SubjectReconChargeConfirmed, checkout, contracts.ChargeConfirmed{
				CheckoutID: checkout, PSPPaymentID: l.PSPReference, PSPStatus: a.status, AmountMinor: l.GrossMinor,
				Currency: l.Currency, SettlementDate: run.date, ConfirmedAt: now})
			if err != nil {
				return false, err
			}
			confirmed = append(confirmed, msg)
		}
	}

	clk.lap("classify")

	// Park missing captures on their expected rows. A row that appeared
	// since the lock (the capture's ledger entry just arrived) makes the
	// chunk start over: it is a known reference now.
	if len(parkRefs) > 0 {
		types, curs := make([]string, len(parkLines)), make([]string, len(parkLines))
		gross, mrefs := make([]int64, len(parkLines)), make([]string, len(parkLines))
		for i, l := range parkLines {
			types[i], curs[i], gross[i], mrefs[i] = l.RecordType, l.Currency, l.GrossMinor, l.MerchantReference
		}
		tag, err := tx.Exec(ctx, `INSERT INTO recon.expected (psp_reference, record_type, reference, currency, gross_minor, parked)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::jsonb[])
ON CONFLICT (psp_reference) DO NOTHING`, parkRefs, types, mrefs, curs, gross, parkRows)
		if err != nil {
			return false, fmt.Errorf("reconciler: park lines: %w", err)
		}
		if int(tag.RowsAffected()) != len(parkRefs) {
			return true, nil
		}
	}

	if len(settleRefs) > 0 {
		tag, err := tx.Exec(ctx, `INSERT INTO recon.settlements (psp_reference, file_id, line_no, settlement_date)
SELECT u.ref, $1, u.line, $2 FROM unnest($3::text[], $4::bigint[]) AS u(ref, line)
ON CONFLICT (psp_reference) DO NOTHING`, run.fileID, run.date, settleRefs, settleLines)
		if err != nil {
			return false, fmt.Errorf("reconciler: settle lines: %w", err)
		}
		if int(tag.RowsAffected()) != len(settleRefs) {
			// Settled meanwhile (the previous chunk, a parked line):
			// classify the chunk again.
			return true, nil
		}
	}
	clk.lap("settle")

	var msgs []*outbox.Message
	inserted, err := insertMismatches(ctx, tx, run, mms, now)
	if err != nil {
		return false, err
	}
	for _, mm := range mms {
		if !inserted[mm.id] {
			continue
		}
		msg, err := newMessage(contracts.SubjectReconMismatchFound, mm.id.String(), foundEvent(run, mm, now))
		if err != nil {
			return false, err
		}
		msgs = append(msgs, msg)
	}
	msgs = append(msgs, confirmed...)
	clk.lap("mismatches")

	// A matched line closes the settles_later its movement carried.
	if len(settleRefs) > 0 {
		res, err := resolveOpen(ctx, tx, settleRefs, contracts.MismatchSettlesLater, "settled",
			fmt.Sprintf("settled by line of file %.12s on %s", run.fileID, run.date), now)
		if err != nil {
			return false, err
		}
		msgs = append(msgs, res...)
	}
	clk.lap("resolve")

	curs := make([]string, 0, len(batches))
	for c := range batches {
		curs = append(curs, c)
	}
	sort.Strings(curs)
	first := int64(0)
	if len(lines) > 0 {
		first = lines[0].No
	}
	for _, c := range curs {
		b := batches[c]
		id := idFor("batch", run.fileID, strconv.FormatInt(first, 10), c)
		msg, err := newMessage(contracts.SubjectReconBatchSettled, id.String(), contracts.BatchSettled{
			BatchID: id.String(), SettlementDate: run.date, FileID: run.fileID, Currency: c, Lines: b.lines,
			ChargesGrossMinor: b.charges, RefundsGrossMinor: b.refunds, FeesMinor: b.fees, SettledAt: now})
		if err != nil {
			return false, err
		}
		msgs = append(msgs, msg)
		st.Batches++
	}
	if err := writeMessages(ctx, tx, msgs); err != nil {
		return false, err
	}
	clk.lap("outbox")

	phase := "file"
	if eof {
		phase = "ledger"
	}
	if err := advanceRun(ctx, tx, run, lastLine, phase, run.ledgerAfter, st); err != nil {
		return false, err
	}
	clk.lap("cursor")
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("reconciler: commit chunk ending at line %d: %w", lastLine, err)
	}
	clk.lap("commit")
	run.cursor, run.phase, run.state = lastLine, phase, st
	for o, n := range outcomes {
		r.m.lines.WithLabelValues(o).Add(float64(n))
	}
	for _, mm := range mms {
		if inserted[mm.id] {
			r.m.mismatches.WithLabelValues(mm.class).Inc()
		}
	}
	return false, nil
}

// parkedLine is a line waiting for its ledger entry (expected.parked).
type parkedLine struct {
	Line
	FileID     string `json:"file_id"`
	RunID      string `json:"run_id"`
	MismatchID string `json:"mismatch_id"`
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func cloneState(s *runState) *runState {
	b, _ := json.Marshal(s)
	c := newRunState()
	_ = json.Unmarshal(b, c)
	return c
}

func foundEvent(run *runRow, mm chunkMismatch, now time.Time) contracts.MismatchFound {
	ev := contracts.MismatchFound{MismatchID: mm.id.String(), RunID: run.id.String(), SettlementDate: run.date,
		Class: mm.class, Queue: contracts.MismatchQueue(mm.class), Reaction: mm.v.Reaction, Detail: mm.v.Detail,
		LedgerAmountMinor: mm.v.Ledger, FoundAt: now}
	if l := mm.line; l != nil {
		ev.LineNo, ev.RecordType, ev.PSPReference, ev.MerchantReference, ev.Currency, ev.FileAmountMinor =
			l.No, l.RecordType, l.PSPReference, l.MerchantReference, l.Currency, l.GrossMinor
	}
	return ev
}

// askPSP looks unknown charges up at the PSP, at most PSPConcurrency at a
// time, each call bounded by PSPTimeout and retried per PSPRetry. Not found
// is an answer; a PSP that does not answer fails the run (nothing guessed).
func (r *Reconciler) askPSP(ctx context.Context, refs []string) (map[string]*pspAnswer, error) {
	if r.client == nil {
		return nil, fmt.Errorf("%w: %d charges in the file are unknown to the ledger and only the PSP can confirm them", ErrNoPSP, len(refs))
	}
	out := make(map[string]*pspAnswer, len(refs))
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, r.cfg.PSPConcurrency)
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, ref := range refs {
		select {
		case sem <- struct{}{}:
		case <-cctx.Done():
		}
		if cctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var p psp.Payment
			err := r.cfg.PSPRetry.Do(cctx, func(ctx context.Context) error {
				c, cancel := context.WithTimeout(ctx, r.cfg.PSPTimeout)
				defer cancel()
				var err error
				p, err = r.client.GetPayment(c, ref)
				if err != nil && psp.IsNotFound(err) {
					return nil
				}
				return err
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("reconciler: PSP look-up of %s: %w", ref, err)
					cancel()
				}
				return
			}
			out[ref] = &pspAnswer{found: p.ID != "", status: p.Status, amountMinor: p.AmountMinor,
				currency: p.Currency, merchantReference: p.MerchantReference}
			r.m.pspLookups.Inc()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// newMessage builds a recon event.
func newMessage(subject, aggregateID string, payload any) (*outbox.Message, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("reconciler: encode %s: %w", subject, err)
	}
	return &outbox.Message{Subject: subject, Type: contracts.TypeOf(subject), Source: contracts.SourceRecon,
		AggregateID: aggregateID, AggregateVersion: 1, Payload: b}, nil
}

// writeMessages writes any number of messages, in slices the outbox takes.
func writeMessages(ctx context.Context, tx pgx.Tx, msgs []*outbox.Message) error {
	for len(msgs) > 0 {
		n := min(len(msgs), outbox.MaxMessagesPerTx)
		if err := Store.Write(ctx, tx, msgs[:n]...); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}
