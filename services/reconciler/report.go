package reconciler

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// WriteReport writes the run's summary and its settlement date's mismatch
// list (at most MaxListLimit rows) into dir: recon-<date>-summary.json,
// recon-<date>-mismatches.csv and recon-<date>-mismatches.json. Files are
// written to a temporary name and renamed, so a reader never sees half.
func (r *Reconciler) WriteReport(ctx context.Context, dir string, sum Summary) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("reconciler: report dir: %w", err)
	}
	ms, err := r.Mismatches(ctx, Filter{Date: sum.SettlementDate, Limit: MaxListLimit})
	if err != nil {
		return err
	}
	base := filepath.Join(dir, "recon-"+sum.SettlementDate)
	if err := writeAtomic(base+"-summary.json", func(w io.Writer) error { return writeIndented(w, sum) }); err != nil {
		return err
	}
	if err := writeAtomic(base+"-mismatches.json", func(w io.Writer) error { return writeIndented(w, ms) }); err != nil {
		return err
	}
	return writeAtomic(base+"-mismatches.csv", func(w io.Writer) error { return WriteMismatchCSV(w, ms) })
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeAtomic(path string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("reconciler: report: %w", err)
	}
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("reconciler: report %s: %w", path, err)
	}
	return nil
}

// MismatchCSVHeader is the mismatch list's CSV header.
var MismatchCSVHeader = []string{"id", "settlement_date", "class", "queue", "status", "line_no", "record_type",
	"psp_reference", "merchant_reference", "seller_id", "currency", "file_amount_minor", "ledger_amount_minor",
	"detail", "reaction", "found_at", "resolution", "resolved_by", "resolved_at", "note"}

// WriteMismatchCSV writes ms as CSV with MismatchCSVHeader.
func WriteMismatchCSV(w io.Writer, ms []Mismatch) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(MismatchCSVHeader); err != nil {
		return err
	}
	for _, m := range ms {
		line, resolved := "", ""
		if m.LineNo != nil {
			line = strconv.FormatInt(*m.LineNo, 10)
		}
		if m.ResolvedAt != nil {
			resolved = m.ResolvedAt.UTC().Format(time.RFC3339)
		}
		if err := cw.Write([]string{m.ID, m.SettlementDate, m.Class, m.Queue, m.Status, line, m.RecordType,
			m.PSPReference, m.MerchantReference, m.SellerID, m.Currency, strconv.FormatInt(m.FileAmountMinor, 10),
			strconv.FormatInt(m.LedgerAmountMinor, 10), m.Detail, m.Reaction, m.FoundAt.UTC().Format(time.RFC3339),
			m.Resolution, m.ResolvedBy, resolved, m.Note}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
