package reconciler

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/paypipe/paypipe/contracts/money"
)

// Header is the exact first line of a settlement file (docs/settlement-file.md).
const Header = "record_type,settlement_date,psp_reference,merchant_reference,currency,gross_minor,fee_minor,net_minor,created_at"

var headerFields = strings.Split(Header, ",")

// Record types of a settlement line.
const (
	RecordOpening = "opening_balance"
	RecordCharge  = "charge"
	RecordRefund  = "refund"
	RecordPayout  = "payout"
	RecordClosing = "closing_balance"
)

// MaxLineBytes bounds one physical line of a settlement file (a v1 line is
// about 150 bytes): a file without line breaks must not make the reader
// buffer it whole.
const MaxLineBytes = 4096

// ErrBadFile is wrapped by every error that makes a whole file unusable
// (wrong header, an over-long line, a balance line of another day).
var ErrBadFile = errors.New("reconciler: bad settlement file")

// Line is one movement line of a settlement file.
type Line struct {
	No                int64     `json:"line_no"`
	RecordType        string    `json:"record_type"`
	SettlementDate    string    `json:"settlement_date"`
	PSPReference      string    `json:"psp_reference"`
	MerchantReference string    `json:"merchant_reference"`
	Currency          string    `json:"currency"`
	GrossMinor        int64     `json:"gross_minor"`
	FeeMinor          int64     `json:"fee_minor"`
	NetMinor          int64     `json:"net_minor"`
	CreatedAt         time.Time `json:"created_at"`
	// Malformed says why the line cannot be read ("" if it can); the other
	// fields then hold what could be read.
	Malformed string `json:"malformed,omitempty"`
	// Raw is the line as read, kept only for malformed lines (evidence).
	Raw string `json:"raw,omitempty"`
}

// balance is an opening or closing balance line.
type balance struct {
	closing  bool
	currency string
	minor    int64
}

// fileReader streams a settlement file record by record. Memory is bounded
// by MaxLineBytes and one record: csv.Reader reuses its record slice.
type fileReader struct {
	r    *csv.Reader
	date string
	no   int64 // number of the last line read (1 = the header)
}

func newFileReader(src io.Reader, date string) (*fileReader, error) {
	cr := csv.NewReader(&lineLimitReader{r: src, max: MaxLineBytes})
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1 // a short line is a malformed line, not a broken file
	fr := &fileReader{r: cr, date: date}
	h, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file (want the header %q)", ErrBadFile, Header)
		}
		return nil, fmt.Errorf("%w: header: %w", ErrBadFile, err)
	}
	fr.no = 1
	if len(h) > 0 {
		h[0] = strings.TrimPrefix(h[0], "\ufeff")
	}
	if strings.Join(h, ",") != Header {
		return nil, fmt.Errorf("%w: header is %q, want exactly %q", ErrBadFile, oneLine(strings.Join(h, ","), 200), Header)
	}
	return fr, nil
}

// next returns the next line: a movement (mv != nil) or a balance (bal !=
// nil), or io.EOF.
func (fr *fileReader) next() (mv *Line, bal *balance, err error) {
	rec, err := fr.r.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) && !errors.Is(err, errLineTooLong) {
			// A broken quote: the line is malformed; the reader resumes on
			// the next line.
			fr.no++
			return &Line{No: fr.no, Malformed: "unreadable CSV: " + pe.Err.Error()}, nil, nil
		}
		if errors.Is(err, errLineTooLong) {
			return nil, nil, fmt.Errorf("%w: line %d: %w", ErrBadFile, fr.no+1, err)
		}
		return nil, nil, err
	}
	fr.no++
	if len(rec) > 0 && (rec[0] == RecordOpening || rec[0] == RecordClosing) {
		b, berr := fr.parseBalance(rec)
		if berr != nil {
			return nil, nil, berr
		}
		return nil, b, nil
	}
	return parseLine(fr.no, rec, fr.date), nil, nil
}

func (fr *fileReader) parseBalance(rec []string) (*balance, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: line %d (%s): %s", ErrBadFile, fr.no, rec[0], why)
	}
	if len(rec) != len(headerFields) {
		return nil, bad(fmt.Sprintf("%d fields, want %d", len(rec), len(headerFields)))
	}
	if rec[1] != fr.date {
		return nil, bad(fmt.Sprintf("settlement_date %q: this is not the file of %s", rec[1], fr.date))
	}
	if _, err := money.ParseCurrency(rec[4]); err != nil {
		return nil, bad(err.Error())
	}
	v, err := strconv.ParseInt(rec[7], 10, 64)
	if err != nil {
		return nil, bad("net_minor: " + err.Error())
	}
	return &balance{closing: rec[0] == RecordClosing, currency: rec[4], minor: v}, nil
}

// parseLine reads a movement line; what it cannot read makes it malformed.
func parseLine(no int64, rec []string, date string) *Line {
	l := &Line{No: no}
	fail := func(why string) *Line {
		l.Malformed = why
		l.Raw = oneLine(strings.Join(rec, ","), 512)
		return l
	}
	if len(rec) != len(headerFields) {
		return fail(fmt.Sprintf("%d fields, want %d", len(rec), len(headerFields)))
	}
	l.RecordType, l.SettlementDate, l.PSPReference, l.MerchantReference, l.Currency =
		rec[0], rec[1], rec[2], rec[3], rec[4]
	switch l.RecordType {
	case RecordCharge, RecordRefund, RecordPayout:
	default:
		return fail(fmt.Sprintf("record_type %q", oneLine(rec[0], 40)))
	}
	if l.SettlementDate != date {
		return fail(fmt.Sprintf("settlement_date %q in the file of %s", oneLine(rec[1], 40), date))
	}
	if l.PSPReference == "" || len(l.PSPReference) > 255 {
		return fail("psp_reference empty or longer than 255 bytes")
	}
	if len(l.MerchantReference) > 255 {
		return fail("merchant_reference longer than 255 bytes")
	}
	if _, err := money.ParseCurrency(l.Currency); err != nil {
		return fail(err.Error())
	}
	var err error
	if l.GrossMinor, err = strconv.ParseInt(rec[5], 10, 64); err != nil {
		return fail("gross_minor: not an integer")
	}
	if l.FeeMinor, err = strconv.ParseInt(rec[6], 10, 64); err != nil {
		return fail("fee_minor: not an integer")
	}
	if l.NetMinor, err = strconv.ParseInt(rec[7], 10, 64); err != nil {
		return fail("net_minor: not an integer")
	}
	if l.CreatedAt, err = time.Parse(time.RFC3339Nano, rec[8]); err != nil {
		return fail("created_at: not an RFC 3339 time")
	}
	abs := l.GrossMinor
	if abs < 0 {
		abs = -abs
	}
	switch {
	case l.GrossMinor == 0 || abs > money.MaxAmount || abs < 0:
		return fail(fmt.Sprintf("gross_minor %d out of range", l.GrossMinor))
	case (l.RecordType == RecordCharge) != (l.GrossMinor > 0):
		return fail(fmt.Sprintf("gross_minor %d has the wrong sign for a %s", l.GrossMinor, l.RecordType))
	case l.FeeMinor < 0 || l.FeeMinor > money.MaxAmount:
		return fail(fmt.Sprintf("fee_minor %d out of range", l.FeeMinor))
	case l.GrossMinor-l.FeeMinor != l.NetMinor: // |operands| ≤ MaxAmount: no overflow
		return fail(fmt.Sprintf("net_minor %d ≠ gross_minor %d − fee_minor %d", l.NetMinor, l.GrossMinor, l.FeeMinor))
	}
	return l
}

// errLineTooLong is the lineLimitReader's complaint.
var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLineBytes)

// lineLimitReader fails once a physical line (outside quotes: a quoted
// field may hold a line break) grows past max bytes.
type lineLimitReader struct {
	r       io.Reader
	max     int
	n       int
	inQuote bool
}

func (l *lineLimitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		switch b {
		case '"':
			l.inQuote = !l.inQuote
		case '\n':
			if !l.inQuote {
				l.n = 0
				continue
			}
		}
		l.n++
		if l.n > l.max {
			return 0, errLineTooLong
		}
	}
	return n, err
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
