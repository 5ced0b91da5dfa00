package reconciler

import (
	"bufio"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/wallet"
)

// Store is the recon schema's outbox and inbox.
var Store = outbox.MustStore("recon")

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the reconciler's migrations: the outbox and inbox tables, then
// migrations/*.sql.
func Schema() migrate.Schema {
	return migrate.Embedded(Store, migrations)
}

// Errors callers match with errors.Is.
var (
	ErrInvalidRequest  = errors.New("reconciler: invalid request")
	ErrRunInProgress   = errors.New("reconciler: another run of this date is in progress")
	ErrNotFound        = errors.New("reconciler: not found")
	ErrAlreadyResolved = errors.New("reconciler: mismatch already resolved")
	ErrNoPSP           = errors.New("reconciler: no PSP client configured")
)

// Config configures a Reconciler. Every field has a safe default.
type Config struct {
	// ChunkLines is how many file lines one transaction reconciles: memory
	// is bounded by it, not by the file. Default 5000, at most 5000 (each
	// chunk's events must fit one outbox write).
	ChunkLines int
	// PSPFeeBPS is the PSP's contracted fee per charge in basis points
	// (default 290): a charge's fee must be round_half_up(gross × bps / 10000).
	PSPFeeBPS int
	// GraceDays is how many days a ledger movement may stay out of the
	// settlement files (settles_later) before it becomes
	// missing_in_settlement. Default 1.
	GraceDays int
	// SkipWalletCheck turns off the wallet ↔ ledger check at the end of a
	// run (it needs the wallet and ledger schemas in this database).
	SkipWalletCheck bool
	// ReportDir, if set, receives recon-<date>-summary.json and the
	// mismatch list as recon-<date>-mismatches.csv and .json after each run.
	ReportDir string
	// TempDir holds downloaded settlement files while a run reads them
	// (default os.TempDir()).
	TempDir string
	// PSPConcurrency bounds parallel PSP look-ups of unknown charges (default 8).
	PSPConcurrency int
	// PSPTimeout bounds one PSP call (default 10 s); PSPRetry retries the
	// look-ups (default: exponential from 200 ms, 5 attempts). A PSP that
	// does not answer fails the run, which resumes on the next try.
	PSPTimeout time.Duration
	PSPRetry   retry.Policy
	// DownloadTimeout bounds a settlement file download (default 10 min).
	DownloadTimeout time.Duration
	// RunAt is when Nightly reconciles yesterday, "HH:MM" UTC (default
	// "02:30"); "off" disables it. NightlyRetry retries a failed nightly
	// run (default: exponential from 1 min to 30 min, for at most 6 h).
	// CheckInterval is how often Nightly looks whether a run is due
	// (default 1 min).
	RunAt         string
	NightlyRetry  retry.Policy
	CheckInterval time.Duration
	// Registerer, if set, receives the reconciler's metrics.
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// MaxChunkLines bounds Config.ChunkLines.
const MaxChunkLines = 5000

func (c Config) withDefaults() Config {
	if c.ChunkLines == 0 {
		c.ChunkLines = 5000
	}
	if c.PSPFeeBPS == 0 {
		c.PSPFeeBPS = 290
	}
	if c.GraceDays == 0 {
		c.GraceDays = 1
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.PSPConcurrency == 0 {
		c.PSPConcurrency = 8
	}
	if c.PSPTimeout == 0 {
		c.PSPTimeout = 10 * time.Second
	}
	if isZeroPolicy(c.PSPRetry) {
		c.PSPRetry = retry.Policy{Strategy: retry.Exponential, Initial: 200 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2, MaxAttempts: 5}
	}
	if c.DownloadTimeout == 0 {
		c.DownloadTimeout = 10 * time.Minute
	}
	if c.RunAt == "" {
		c.RunAt = "02:30"
	}
	if isZeroPolicy(c.NightlyRetry) {
		c.NightlyRetry = retry.Policy{Strategy: retry.Exponential, Initial: time.Minute, Max: 30 * time.Minute, Jitter: 0.2, MaxElapsed: 6 * time.Hour}
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func isZeroPolicy(p retry.Policy) bool { return p == (retry.Policy{}) }

// Validate reports the first unusable field (after defaults).
func (c Config) Validate() error {
	switch {
	case c.ChunkLines < 1 || c.ChunkLines > MaxChunkLines:
		return fmt.Errorf("reconciler: ChunkLines %d: want 1 to %d", c.ChunkLines, MaxChunkLines)
	case c.PSPFeeBPS < 0 || c.PSPFeeBPS > 10000:
		return fmt.Errorf("reconciler: PSPFeeBPS %d: want 0 to 10000", c.PSPFeeBPS)
	case c.GraceDays < 0 || c.GraceDays > 60:
		return fmt.Errorf("reconciler: GraceDays %d: want 0 to 60", c.GraceDays)
	case c.PSPConcurrency < 1 || c.PSPConcurrency > 64:
		return fmt.Errorf("reconciler: PSPConcurrency %d: want 1 to 64", c.PSPConcurrency)
	case c.PSPTimeout < 0 || c.DownloadTimeout < 0 || c.CheckInterval < 0:
		return errors.New("reconciler: timeouts and intervals must not be negative")
	case c.PSPRetry.MaxAttempts == 0 && c.PSPRetry.MaxElapsed == 0:
		return errors.New("reconciler: PSPRetry needs MaxAttempts or MaxElapsed")
	case c.NightlyRetry.MaxAttempts == 0 && c.NightlyRetry.MaxElapsed == 0:
		return errors.New("reconciler: NightlyRetry needs MaxAttempts or MaxElapsed")
	}
	if err := c.PSPRetry.Validate(); err != nil {
		return fmt.Errorf("reconciler: PSPRetry: %w", err)
	}
	if err := c.NightlyRetry.Validate(); err != nil {
		return fmt.Errorf("reconciler: NightlyRetry: %w", err)
	}
	if _, _, err := parseRunAt(c.RunAt); err != nil {
		return err
	}
	return nil
}

// parseRunAt reads "HH:MM" (off → ok false).
func parseRunAt(s string) (hour, minute int, err error) {
	if s == "off" {
		return -1, -1, nil
	}
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, 0, fmt.Errorf("reconciler: RunAt %q: want HH:MM (UTC) or off", s)
	}
	return t.Hour(), t.Minute(), nil
}

// Reconciler proves the ledger against the PSP's settlement files.
type Reconciler struct {
	cfg         Config
	pool        *pgxpool.Pool
	client      psp.Client
	settlements psp.SettlementClient
	log         *slog.Logger
	m           *metrics
	hooks       hooks
}

// hooks let tests stop a run at precise points.
type hooks struct {
	// afterChunk runs after chunk k (1-based) committed; an error stops the run.
	afterChunk func(k int) error
	// chunk sees how many movement lines chunk k holds, before it commits.
	chunk func(k, lines int)
	// readAhead runs when the reader has read and looked up chunk k.
	readAhead func(k int)
	// walletCheck replaces wallet.CheckAgainstLedger.
	walletCheck func(ctx context.Context) ([]wallet.Drift, error)
}

// New returns a Reconciler. client answers GetPayment for charges the
// ledger does not know; settlements downloads files when a run is given
// none. Either may be nil: a run that needs it then fails with ErrNoPSP.
func New(cfg Config, pool *pgxpool.Pool, client psp.Client, settlements psp.SettlementClient, log *slog.Logger) (*Reconciler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, errors.New("reconciler: nil pool")
	}
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Reconciler{cfg: cfg, pool: pool, client: client, settlements: settlements,
		log: log.With("service", "reconciler"), m: m}, nil
}

// RunRequest names the settlement date to reconcile and, optionally, the
// file; without File the PSP's report of Date is downloaded.
type RunRequest struct {
	Date time.Time // a UTC day; the time of day is ignored
	File string
}

// BalanceCheck compares a currency's opening and closing balance with the
// file's lines: ClosingMinor − OpeningMinor must equal LinesNetMinor.
type BalanceCheck struct {
	Currency        string `json:"currency"`
	OpeningMinor    int64  `json:"opening_minor"`
	ClosingMinor    int64  `json:"closing_minor"`
	LinesNetMinor   int64  `json:"lines_net_minor"`
	DifferenceMinor int64  `json:"difference_minor"`
}

// Summary is a run's result. A completed run's summary is stored; running
// the same date and file again returns it unchanged.
type Summary struct {
	RunID          string           `json:"run_id"`
	SettlementDate string           `json:"settlement_date"`
	FileID         string           `json:"file_id"`
	Lines          int64            `json:"lines"`
	Matched        int64            `json:"matched"`
	Mismatches     map[string]int64 `json:"mismatches"`
	// MismatchTotal counts the mismatches this run found (Σ Mismatches).
	MismatchTotal int64                      `json:"mismatch_total"`
	Totals        []contracts.CurrencyTotals `json:"totals"`
	Balances      []BalanceCheck             `json:"balances"`
	BalancesOK    bool                       `json:"balances_ok"`
	// Batches is the number of recon.batch.settled events the run emitted.
	Batches int64 `json:"batches"`
	// CarriedOver counts ledger movements still awaiting settlement whose
	// settles_later mismatch (from an earlier run) stays open.
	CarriedOver int64     `json:"carried_over"`
	Escalated   int64     `json:"escalated"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at"`
}

// runState is a run's progress, committed with every chunk.
type runState struct {
	Lines       int64                                `json:"lines"`
	Matched     int64                                `json:"matched"`
	Mismatches  map[string]int64                     `json:"mismatches"`
	Totals      map[string]*contracts.CurrencyTotals `json:"totals"`
	Opening     map[string]int64                     `json:"opening"`
	Closing     map[string]int64                     `json:"closing"`
	Batches     int64                                `json:"batches"`
	CarriedOver int64                                `json:"carried_over"`
	Escalated   int64                                `json:"escalated"`
	Summary     *Summary                             `json:"summary,omitempty"`
}

func newRunState() *runState {
	return &runState{Mismatches: map[string]int64{}, Totals: map[string]*contracts.CurrencyTotals{},
		Opening: map[string]int64{}, Closing: map[string]int64{}}
}

func (s *runState) totals(cur string) *contracts.CurrencyTotals {
	t := s.Totals[cur]
	if t == nil {
		t = &contracts.CurrencyTotals{Currency: cur}
		s.Totals[cur] = t
	}
	return t
}

func (s *runState) summary(run *runRow, completed time.Time) Summary {
	sum := Summary{RunID: run.id.String(), SettlementDate: run.date, FileID: run.fileID, Lines: s.Lines,
		Matched: s.Matched, Mismatches: map[string]int64{}, Batches: s.Batches, CarriedOver: s.CarriedOver,
		Escalated: s.Escalated, StartedAt: run.startedAt.UTC(), CompletedAt: completed.UTC(), BalancesOK: true,
		Totals: []contracts.CurrencyTotals{}, Balances: []BalanceCheck{}}
	for k, v := range s.Mismatches {
		if v != 0 {
			sum.Mismatches[k] = v
			sum.MismatchTotal += v
		}
	}
	curs := map[string]bool{}
	for c, t := range s.Totals {
		sum.Totals = append(sum.Totals, *t)
		curs[c] = true
	}
	for c := range s.Opening {
		curs[c] = true
	}
	for c := range s.Closing {
		curs[c] = true
	}
	sort.Slice(sum.Totals, func(i, j int) bool { return sum.Totals[i].Currency < sum.Totals[j].Currency })
	for c := range curs {
		b := BalanceCheck{Currency: c, OpeningMinor: s.Opening[c], ClosingMinor: s.Closing[c]}
		if t := s.Totals[c]; t != nil {
			b.LinesNetMinor = t.FileNetMinor
		}
		b.DifferenceMinor = b.ClosingMinor - b.OpeningMinor - b.LinesNetMinor
		if b.DifferenceMinor != 0 {
			sum.BalancesOK = false
		}
		sum.Balances = append(sum.Balances, b)
	}
	sort.Slice(sum.Balances, func(i, j int) bool { return sum.Balances[i].Currency < sum.Balances[j].Currency })
	return sum
}

// Run reconciles one settlement date. The file is streamed in chunks of
// Config.ChunkLines lines, one transaction each; a run that stops (crash,
// cancel, PSP down) resumes from its last committed chunk when run again
// with the same file, and a completed run returns its stored summary. Two
// runs of one date never overlap: the second gets ErrRunInProgress.
func (r *Reconciler) Run(ctx context.Context, req RunRequest) (Summary, error) {
	if req.Date.IsZero() {
		return Summary{}, fmt.Errorf("%w: no date", ErrInvalidRequest)
	}
	d := req.Date.UTC()
	day := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	date := day.Format(time.DateOnly)
	start := time.Now()

	path := req.File
	var fileID string
	var err error
	if path == "" {
		path, fileID, err = r.download(ctx, day)
		if err != nil {
			return Summary{}, err
		}
		defer os.Remove(path)
	} else if fileID, err = hashFile(path); err != nil {
		return Summary{}, err
	}

	unlock, err := r.lockDate(ctx, date)
	if err != nil {
		return Summary{}, err
	}
	defer unlock()

	run, err := r.startRun(ctx, date, fileID)
	if err != nil {
		return Summary{}, err
	}
	if run.status == "completed" {
		r.log.InfoContext(ctx, "settlement date already reconciled with this file; returning the stored summary",
			"date", date, "file_id", fileID, "run_id", run.id)
		return *run.state.Summary, nil
	}
	log := r.log.With("date", date, "file_id", fileID[:12], "run_id", run.id)
	log.InfoContext(ctx, "reconciliation run started", "resume_after_line", run.cursor, "phase", run.phase)

	if run.phase == "file" {
		if err := r.processFile(ctx, run, path); err != nil {
			r.noteError(ctx, run, err)
			return Summary{}, err
		}
	}
	if run.phase == "ledger" {
		if err := r.ledgerPass(ctx, run, day); err != nil {
			r.noteError(ctx, run, err)
			return Summary{}, err
		}
	}
	sum, err := r.complete(ctx, run)
	if err != nil {
		r.noteError(ctx, run, err)
		return Summary{}, err
	}
	r.m.runDuration.Observe(time.Since(start).Seconds())
	r.refreshQueueDepth(ctx)
	if r.cfg.ReportDir != "" {
		if err := r.WriteReport(ctx, r.cfg.ReportDir, sum); err != nil {
			log.ErrorContext(ctx, "writing the report files failed; the run itself completed", "err", err)
		}
	}
	log.InfoContext(ctx, "reconciliation run completed", "lines", sum.Lines, "matched", sum.Matched,
		"mismatches", sum.MismatchTotal, "balances_ok", sum.BalancesOK, "duration", time.Since(start).String())
	return sum, nil
}

// download streams the PSP's report of day into a temporary file, hashing
// it on the way: the file is never held in memory.
func (r *Reconciler) download(ctx context.Context, day time.Time) (path, fileID string, err error) {
	if r.settlements == nil {
		return "", "", fmt.Errorf("%w: no settlement client to download the file of %s (give a file)", ErrNoPSP, day.Format(time.DateOnly))
	}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DownloadTimeout)
	defer cancel()
	body, err := r.settlements.SettlementReport(dctx, day)
	if err != nil {
		return "", "", fmt.Errorf("reconciler: download settlement file of %s: %w", day.Format(time.DateOnly), err)
	}
	defer body.Close()
	f, err := os.CreateTemp(r.cfg.TempDir, "settlement-"+day.Format(time.DateOnly)+"-*.csv")
	if err != nil {
		return "", "", fmt.Errorf("reconciler: temp file: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", "", fmt.Errorf("reconciler: download settlement file of %s: %w", day.Format(time.DateOnly), err)
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReaderSize(f, 1<<16)); err != nil {
		return "", fmt.Errorf("reconciler: read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lockDate takes the date's session advisory lock on a dedicated
// connection, or fails with ErrRunInProgress. The chunk transactions also
// compare-and-set the run's cursor, so a lost lock connection cannot let
// two runs apply one chunk.
func (r *Reconciler) lockDate(ctx context.Context, date string) (func(), error) {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("reconciler: lock: %w", err)
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte("paypipe-recon:" + date))
	key := int64(h.Sum64() >> 1)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("reconciler: lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, fmt.Errorf("%w (%s)", ErrRunInProgress, date)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// Closing the connection releases the lock with the session.
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, nil
}

// runNamespace derives run, batch and mismatch ids (UUIDv5).
var runNamespace = uuid.MustParse("5b0f9a57-2a51-4d61-9d3c-6f0e2f7a1c11")

func idFor(parts ...string) uuid.UUID {
	return uuid.NewSHA1(runNamespace, []byte(strings.Join(parts, "|")))
}
