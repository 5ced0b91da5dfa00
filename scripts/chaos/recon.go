package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/services/reconciler"
)

// ReconFigures are the reconciliation's (I8, F21).
type ReconFigures struct {
	Ran bool `json:"ran"`
	// Dates reconciled: every UTC day the run touched.
	Dates []string `json:"dates"`
	Lines int64    `json:"lines"`
	// Matched lines and mismatches by class, over every date.
	Matched           int64            `json:"matched"`
	MismatchesByClass map[string]int64 `json:"mismatches_by_class"`
	Batches           int64            `json:"batches"`
	// DiffByCurrency is |ledger psp_receivable| + |ledger bank − the
	// file's closing balance| per currency, after the settlement batches
	// were posted: all 0 when the books agree with the PSP.
	DiffByCurrency map[string]int64 `json:"recon_diff_minor_units_by_currency"`
	// Crash is F21: what the killed run had done, and whether its resume
	// ended like a clean rerun.
	Crash string `json:"crash,omitempty"`
}

// settlementFile is the part of a settlement file the checks need.
type settlementFile struct {
	lines   int64
	refs    map[string]bool
	net     map[string]int64
	closing map[string]int64
}

// parseSettlement reads a settlement file (docs/settlement-file.md).
func parseSettlement(b []byte) (settlementFile, error) {
	f := settlementFile{refs: map[string]bool{}, net: map[string]int64{}, closing: map[string]int64{}}
	rd := csv.NewReader(bytes.NewReader(b))
	rd.FieldsPerRecord = 9
	if _, err := rd.Read(); err != nil {
		return f, fmt.Errorf("settlement header: %w", err)
	}
	for {
		rec, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return f, nil
		}
		if err != nil {
			return f, err
		}
		net, err := strconv.ParseInt(rec[7], 10, 64)
		if err != nil {
			return f, fmt.Errorf("settlement net %q: %w", rec[7], err)
		}
		switch cur := rec[4]; rec[0] {
		case "opening_balance":
		case "closing_balance":
			f.closing[cur] = net
		default:
			f.lines++
			f.refs[rec[2]] = true
			f.net[cur] += net
		}
	}
}

// runDays lists the UTC days from since to now, oldest first.
func runDays(since, now time.Time) []string {
	var out []string
	d := time.Date(since.UTC().Year(), since.UTC().Month(), since.UTC().Day(), 0, 0, 0, 0, time.UTC)
	for ; !d.After(now.UTC()) && len(out) < 3; d = d.AddDate(0, 0, 1) {
		out = append(out, d.Format(time.DateOnly))
	}
	return out
}

// reconRun runs `paypipe recon run --date D -o json` to completion.
func (h *harness) reconRun(ctx context.Context, day string) (reconciler.Summary, error) {
	var sum reconciler.Summary
	out, err := h.c.paypipeCmd(ctx, 2*time.Minute, false, "recon", "run", "--date", day, "-o", "json")
	if err != nil {
		return sum, err
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		return sum, fmt.Errorf("recon run output: %w: %s", err, truncate(out, 300))
	}
	return sum, nil
}

// crashRecon is F21's injection: it starts `paypipe recon run --date D`,
// waits until the run has committed at least one chunk (or moved to the
// ledger-side pass), and SIGKILLs it there, so the resume continues a run
// half done (the harness's recon commands use chunks of 50 lines). It
// returns what the killed run had done.
func (h *harness) crashRecon(ctx context.Context, day string) (detail string, interrupted bool, err error) {
	cmd := exec.Command(h.c.paypipe, "recon", "run", "--date", day, "-o", "json")
	cmd.Env = h.c.cliEnv()
	cmd.SysProcAttr = childAttr()
	logf, err := os.OpenFile(h.c.base+"/logs/recon-killed.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", false, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", false, fmt.Errorf("recon run: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-exited:
			return fmt.Sprintf("the run ended (%v) before the kill : nothing interrupted", err), false, nil
		default:
		}
		var status, phase string
		var cursor int64
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		err := h.pool.QueryRow(qctx, `SELECT status, phase, cursor_line FROM recon.runs WHERE settlement_date = $1::date
ORDER BY started_at DESC LIMIT 1`, day).Scan(&status, &phase, &cursor)
		cancel()
		if err == nil && status == "running" && (cursor > 0 || phase != "file") {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = cmd.Process.Kill()
			<-exited
			return "", false, errors.New("recon run: never seen running within 2 min")
		}
		sleepCtx(ctx, 2*time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return "", false, err
	}
	<-exited
	var status, phase string
	var cursor int64
	if err := h.pool.QueryRow(ctx, `SELECT status, phase, cursor_line FROM recon.runs WHERE settlement_date = $1::date
ORDER BY started_at DESC LIMIT 1`, day).Scan(&status, &phase, &cursor); err != nil {
		return "", false, err
	}
	if status != "running" {
		return fmt.Sprintf("SIGKILL landed after the run completed: nothing interrupted"), false, nil
	}
	return fmt.Sprintf("SIGKILL mid-run: the run was left %s in phase %s at line %d", status, phase, cursor), true, nil
}

// reconcile reconciles every day of the run after the pipeline went quiet
// (I8), with F21's crash on the last day: the killed run is resumed to
// completion, then run again; the resumed result must equal the rerun's
// and the file's truth (every line matched once, totals equal). It fills
// s.Recon and the recon safety figures except the ledger comparison,
// which needs the settlement batches posted (reconCheckLedger).
func (h *harness) reconcile(ctx context.Context, s *Summary, since time.Time) (map[string]int64, error) {
	s.Recon.Ran = true
	s.Recon.MismatchesByClass = map[string]int64{}
	days := runDays(since, time.Now())
	s.Recon.Dates = days
	var closing map[string]int64
	for i, day := range days {
		if i == len(days)-1 && h.cfg.has(scReconCrash) {
			detail, interrupted, err := h.crashRecon(ctx, day)
			if err != nil {
				return nil, fmt.Errorf("F21: %w", err)
			}
			s.Recon.Crash = detail
			if interrupted {
				s.FaultsInjected[fReconKills]++
			}
		}
		resumed, err := h.reconRun(ctx, day)
		if err != nil {
			return nil, err
		}
		rerun, err := h.reconRun(ctx, day)
		if err != nil {
			return nil, err
		}
		if !reflect.DeepEqual(resumed, rerun) {
			s.Safety.ReconRerunDiffs++
			a, _ := json.Marshal(resumed)
			b, _ := json.Marshal(rerun)
			s.Failures = append(s.Failures, fmt.Sprintf("recon %s: the rerun answered %s, the first complete run %s", day, truncate(b, 300), truncate(a, 300)))
		}
		raw, err := h.c.settlementFile(ctx, day)
		if err != nil {
			return nil, err
		}
		file, err := parseSettlement(raw)
		if err != nil {
			return nil, err
		}
		closing = file.closing
		compareRecon(s, day, resumed, file)
		// Each settled reference once, and only the file's.
		rows, err := h.pool.Query(ctx, `SELECT psp_reference FROM recon.settlements WHERE settlement_date = $1::date`, day)
		if err != nil {
			return nil, err
		}
		settled := map[string]bool{}
		for rows.Next() {
			var ref string
			if err := rows.Scan(&ref); err != nil {
				return nil, err
			}
			settled[ref] = true
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		for ref := range file.refs {
			if !settled[ref] && resumed.MismatchTotal == 0 {
				s.Safety.ReconRerunDiffs++
				s.Failures = append(s.Failures, fmt.Sprintf("recon %s: %s matched but not recorded as settled", day, ref))
			}
		}
		for ref := range settled {
			if !file.refs[ref] {
				s.Safety.ReconRerunDiffs++
				s.Failures = append(s.Failures, fmt.Sprintf("recon %s: %s settled but not in the file", day, ref))
			}
		}
	}
	return closing, nil
}

// compareRecon holds a run's summary to the file: every movement line
// counted and matched, each currency's net equal to the file's, the
// balances consistent. Mismatches are counted by class.
func compareRecon(s *Summary, day string, sum reconciler.Summary, file settlementFile) {
	s.Recon.Lines += sum.Lines
	s.Recon.Matched += sum.Matched
	s.Recon.Batches += sum.Batches
	for class, n := range sum.Mismatches {
		s.Recon.MismatchesByClass[class] += n
	}
	s.Safety.ReconMismatches += sum.MismatchTotal
	if sum.MismatchTotal > 0 {
		s.Failures = append(s.Failures, fmt.Sprintf("recon %s: %d mismatches %v (`paypipe recon queue --date %s`)", day, sum.MismatchTotal, sum.Mismatches, day))
	}
	var why []string
	if sum.Lines != file.lines || sum.Matched+sum.MismatchTotal < sum.Lines {
		why = append(why, fmt.Sprintf("%d lines, %d matched, %d mismatched; the file has %d", sum.Lines, sum.Matched, sum.MismatchTotal, file.lines))
	}
	if !sum.BalancesOK {
		why = append(why, "balances differ")
	}
	seen := map[string]bool{}
	for _, t := range sum.Totals {
		seen[t.Currency] = true
		if t.FileNetMinor != file.net[t.Currency] {
			why = append(why, fmt.Sprintf("%s net %d, the file's %d", t.Currency, t.FileNetMinor, file.net[t.Currency]))
		}
	}
	for cur, n := range file.net {
		if !seen[cur] && n != 0 {
			why = append(why, fmt.Sprintf("%s missing from the totals (file net %d)", cur, n))
		}
	}
	if len(why) > 0 {
		s.Safety.ReconRerunDiffs++
		s.Failures = append(s.Failures, fmt.Sprintf("recon %s: the summary disagrees with the file: %v", day, why))
	}
}

// reconCheckLedger is I8 once the settlement batches are posted: per
// currency, the ledger's psp_receivable is 0 (everything captured or
// refunded has settled) and its bank equals the file's closing balance.
func (h *harness) reconCheckLedger(ctx context.Context, s *Summary, closing map[string]int64) error {
	bal := func(account string) (map[string]int64, error) {
		out := map[string]int64{}
		err := h.groupCount(ctx, `SELECT currency, sum(CASE WHEN direction = 'debit' THEN amount_minor ELSE -amount_minor END)::bigint
FROM ledger.postings WHERE account = '`+account+`' GROUP BY currency`, out)
		return out, err
	}
	recv, err := bal(contracts.AccountPSPReceivable)
	if err != nil {
		return err
	}
	bank, err := bal(contracts.AccountBank)
	if err != nil {
		return err
	}
	s.Recon.DiffByCurrency = reconDiff(recv, bank, closing)
	var curs []string
	for cur, d := range s.Recon.DiffByCurrency {
		s.Safety.ReconDiffMinorUnits += d
		if d != 0 {
			curs = append(curs, cur)
		}
	}
	slices.Sort(curs)
	for _, cur := range curs {
		s.Failures = append(s.Failures, fmt.Sprintf("I8 %s: psp_receivable %d (want 0), bank %d, the PSP's closing balance %d",
			cur, recv[cur], bank[cur], closing[cur]))
	}
	return nil
}

func reconDiff(recv, bank, closing map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for cur := range union(union2(recv, bank), closing) {
		out[cur] = abs(recv[cur]) + abs(bank[cur]-closing[cur])
	}
	return out
}

func union2(a, b map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k := range a {
		out[k] = 0
	}
	for k := range b {
		out[k] = 0
	}
	return out
}
