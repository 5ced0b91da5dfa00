package psp

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The settlement file's wire format (docs/settlement-file.md, v1), shared by
// the simulator that writes it and the reconciler that reads it.

// SettlementHeader is the file's first line, exactly.
const SettlementHeader = "record_type,settlement_date,psp_reference,merchant_reference,currency,gross_minor,fee_minor,net_minor,created_at"

// SettlementColumns is the number of fields of every line.
const SettlementColumns = 9

// Record types of a settlement line.
const (
	RecordOpeningBalance = "opening_balance"
	RecordCharge         = "charge"
	RecordRefund         = "refund"
	RecordPayout         = "payout"
	RecordClosingBalance = "closing_balance"
)

// SettlementDateLayout formats settlement_date and the file's date.
const SettlementDateLayout = "2006-01-02"

// SettlementFileName is the file name of a day's settlement file.
func SettlementFileName(date time.Time) string {
	return "settlement-" + date.Format(SettlementDateLayout) + ".csv"
}

// SettlementLine is one line of a settlement file. Balance lines have no
// references and no CreatedAt, and carry the balance in NetMinor.
type SettlementLine struct {
	RecordType        string
	SettlementDate    string // YYYY-MM-DD
	PSPReference      string
	MerchantReference string
	Currency          string
	GrossMinor        int64
	FeeMinor          int64
	NetMinor          int64
	CreatedAt         time.Time // zero on balance lines
}

// IsBalance reports whether l is an opening or closing balance line.
func (l SettlementLine) IsBalance() bool {
	return l.RecordType == RecordOpeningBalance || l.RecordType == RecordClosingBalance
}

// Fields returns l as the file's fields, in column order.
func (l SettlementLine) Fields() []string {
	created := ""
	if !l.CreatedAt.IsZero() {
		created = l.CreatedAt.UTC().Format(time.RFC3339Nano)
	}
	return []string{l.RecordType, l.SettlementDate, l.PSPReference, l.MerchantReference, l.Currency,
		strconv.FormatInt(l.GrossMinor, 10), strconv.FormatInt(l.FeeMinor, 10), strconv.FormatInt(l.NetMinor, 10), created}
}

// ErrBadSettlementLine wraps every error of ParseSettlementLine.
var ErrBadSettlementLine = errors.New("psp: bad settlement line")

// ParseSettlementLine reads one line's fields (as encoding/csv returns
// them) and checks what the format promises: a known record type, a date,
// integers, net = gross − fee on movement lines, an RFC 3339 time on
// movement lines.
func ParseSettlementLine(f []string) (SettlementLine, error) {
	if len(f) != SettlementColumns {
		return SettlementLine{}, fmt.Errorf("%w: %d fields, want %d", ErrBadSettlementLine, len(f), SettlementColumns)
	}
	l := SettlementLine{RecordType: f[0], SettlementDate: f[1], PSPReference: f[2], MerchantReference: f[3], Currency: f[4]}
	switch l.RecordType {
	case RecordOpeningBalance, RecordCharge, RecordRefund, RecordPayout, RecordClosingBalance:
	default:
		return l, fmt.Errorf("%w: record_type %q", ErrBadSettlementLine, l.RecordType)
	}
	if _, err := time.Parse(SettlementDateLayout, l.SettlementDate); err != nil {
		return l, fmt.Errorf("%w: settlement_date %q", ErrBadSettlementLine, l.SettlementDate)
	}
	for i, dst := range []*int64{&l.GrossMinor, &l.FeeMinor, &l.NetMinor} {
		n, err := strconv.ParseInt(f[5+i], 10, 64)
		if err != nil {
			return l, fmt.Errorf("%w: column %d %q: %w", ErrBadSettlementLine, 6+i, f[5+i], err)
		}
		*dst = n
	}
	if l.IsBalance() {
		if f[8] != "" || l.PSPReference != "" {
			return l, fmt.Errorf("%w: a balance line with a reference or a time", ErrBadSettlementLine)
		}
		return l, nil
	}
	t, err := time.Parse(time.RFC3339Nano, f[8])
	if err != nil {
		return l, fmt.Errorf("%w: created_at %q", ErrBadSettlementLine, f[8])
	}
	l.CreatedAt = t.UTC()
	// |gross| and fee beyond 2^62 cannot be real money and would let
	// gross − fee wrap.
	const limit = 1 << 62
	if l.FeeMinor < 0 || l.FeeMinor > limit || l.GrossMinor > limit || l.GrossMinor < -limit || l.GrossMinor-l.FeeMinor != l.NetMinor {
		return l, fmt.Errorf("%w: gross %d, fee %d, net %d", ErrBadSettlementLine, l.GrossMinor, l.FeeMinor, l.NetMinor)
	}
	return l, nil
}
