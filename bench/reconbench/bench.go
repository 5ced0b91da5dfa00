package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/internal/pg"
	"github.com/paypipe/paypipe/services/reconciler"
)

// Config is one benchmark run.
type Config struct {
	Lines       int
	ChunkLines  int
	Out         string
	DatabaseURL string
}

// Result is what the benchmark measured.
type Result struct {
	Lines          int64   `json:"lines"`
	ChunkLines     int     `json:"chunk_lines"`
	FileBytes      int64   `json:"file_bytes"`
	Seconds        float64 `json:"reconcile_seconds"`
	LinesPerSecond float64 `json:"recon_lines_per_s"`
	// PeakHeapMB is the largest live Go heap sampled while Run reconciled
	// (HeapAlloc, every 20 ms, after a GC before the start).
	PeakHeapMB float64 `json:"peak_heap_mb"`
	// PhaseMsPerChunk is the mean wall time per chunk of each phase
	// (paypipe_recon_chunk_phase_seconds), in milliseconds.
	PhaseMsPerChunk map[string]float64 `json:"phase_ms_per_chunk"`
	Chunks          int64              `json:"chunks"`
	Matched         int64              `json:"matched"`
	Mismatches      int64              `json:"mismatches"`
	Batches         int64              `json:"batches"`
	Machine         map[string]any     `json:"machine"`
	Command         string             `json:"command"`
	Summary         reconciler.Summary `json:"summary"`
	Note            string             `json:"note"`
}

var currencies = []string{"USD", "EUR", "GBP"}

func ref(i int) string { return fmt.Sprintf("pay_%010d", i) }

func gross(i int) int64 { return 100 + int64(i%100000)*7 }

// Run runs the benchmark.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Lines < 1 || cfg.Lines > 50_000_000 {
		return Result{}, fmt.Errorf("-lines %d: want 1 to 50,000,000", cfg.Lines)
	}
	if cfg.DatabaseURL == "" {
		return Result{}, errors.New("DATABASE_URL is not set (export DATABASE_URL=$(bash scripts/pg.sh url))")
	}
	url, _, drop, err := pg.ScratchDatabase(ctx, cfg.DatabaseURL, "reconbench_", func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "reconbench: "+f+"\n", a...)
	})
	if err != nil {
		return Result{}, err
	}
	defer drop()
	pool, err := pg.Open(ctx, url, pg.Options{MaxConns: 4, AppName: "reconbench"})
	if err != nil {
		return Result{}, err
	}
	defer pool.Close()
	if err := migrate.Up(ctx, pool, nil, reconciler.Schema()); err != nil {
		return Result{}, err
	}

	dir, err := os.MkdirTemp("", "reconbench-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	day := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	path := filepath.Join(dir, "settlement-2026-03-10.csv")
	size, err := writeFile(path, day, cfg.Lines)
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(os.Stderr, "reconbench: wrote %d lines (%.1f MB); seeding recon.expected with COPY\n", cfg.Lines, float64(size)/1e6)
	if err := seed(ctx, pool, day, cfg.Lines); err != nil {
		return Result{}, err
	}
	if _, err := pool.Exec(ctx, `ANALYZE recon.expected`); err != nil {
		return Result{}, err
	}

	reg := prometheus.NewRegistry()
	r, err := reconciler.New(reconciler.Config{ChunkLines: cfg.ChunkLines, SkipWalletCheck: true, RunAt: "off", Registerer: reg}, pool, nil, nil, nil)
	if err != nil {
		return Result{}, err
	}
	runtime.GC()
	debug.FreeOSMemory()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	fmt.Fprintf(os.Stderr, "reconbench: reconciling\n")
	start := time.Now()
	sum, err := r.Run(ctx, reconciler.RunRequest{Date: day, File: path})
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	if err != nil {
		return Result{}, err
	}
	if sum.Matched != int64(cfg.Lines) || sum.MismatchTotal != 0 {
		return Result{}, fmt.Errorf("expected every line matched: %d of %d, %d mismatches", sum.Matched, cfg.Lines, sum.MismatchTotal)
	}
	phases, chunks, err := phaseTimes(reg)
	if err != nil {
		return Result{}, err
	}
	res := Result{PhaseMsPerChunk: phases, Chunks: chunks, Lines: sum.Lines, ChunkLines: cfg.ChunkLines, FileBytes: size, Seconds: elapsed.Seconds(),
		LinesPerSecond: float64(sum.Lines) / elapsed.Seconds(), PeakHeapMB: float64(peak.Load()) / (1 << 20),
		Matched: sum.Matched, Mismatches: sum.MismatchTotal, Batches: sum.Batches, Summary: sum,
		Command: command(cfg),
		Machine: machine(ctx, pool),
		Note:    "Reconciler.Run on a file given by path (hashing included, download excluded), every line matched; the database is local PostgreSQL on the same machine."}
	if cfg.Out != "" {
		if err := record(cfg.Out, res); err != nil {
			return Result{}, err
		}
	}
	return res, nil
}

// record puts res into the results file's "runs", replacing a run of the
// same size; the file's other keys are kept. One file thus holds every size
// measured (memory must not grow with the file).
func record(path string, res Result) error {
	doc := map[string]json.RawMessage{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var runs []Result
	if raw, ok := doc["runs"]; ok {
		if err := json.Unmarshal(raw, &runs); err != nil {
			return fmt.Errorf("%s: runs: %w", path, err)
		}
	}
	runs = slices.DeleteFunc(runs, func(r Result) bool { return r.Lines == res.Lines && r.ChunkLines == res.ChunkLines })
	runs = append(runs, res)
	slices.SortFunc(runs, func(a, b Result) int { return cmp.Compare(b.Lines, a.Lines) })
	b, err := json.Marshal(runs)
	if err != nil {
		return err
	}
	doc["runs"] = b
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}

// phaseTimes reads the mean per-chunk time of each phase from the
// reconciler's paypipe_recon_chunk_phase_seconds histogram.
func phaseTimes(reg *prometheus.Registry) (map[string]float64, int64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, 0, err
	}
	out := map[string]float64{}
	var chunks int64
	for _, mf := range mfs {
		if mf.GetName() != "paypipe_recon_chunk_phase_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			n := int64(h.GetSampleCount())
			if n == 0 {
				continue
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "phase" {
					out[lp.GetValue()] = h.GetSampleSum() / float64(n) * 1000
					if lp.GetValue() == "read" {
						chunks = n
					}
				}
			}
		}
	}
	return out, chunks, nil
}

// writeFile streams a settlement file of n charges to path.
func writeFile(path string, day time.Time, n int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	date := day.Format(time.DateOnly)
	fmt.Fprintln(w, reconciler.Header)
	net := map[string]int64{}
	for _, c := range currencies {
		fmt.Fprintf(w, "opening_balance,%s,,,%s,0,0,0,\n", date, c)
	}
	for i := range n {
		g := gross(i)
		fee, err := money.Fee(g, 290)
		if err != nil {
			return 0, err
		}
		c := currencies[i%len(currencies)]
		net[c] += g - fee
		at := day.Add(time.Duration(i) * time.Millisecond * 80).Format(time.RFC3339)
		fmt.Fprintf(w, "charge,%s,%s,co_%010d,%s,%d,%d,%d,%s\n", date, ref(i), i, c, g, fee, g-fee, at)
	}
	for _, c := range currencies {
		fmt.Fprintf(w, "closing_balance,%s,,,%s,0,0,%d,\n", date, c, net[c])
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// seed COPYs the ledger's projection of the n payments into recon.expected.
func seed(ctx context.Context, pool interface {
	CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error)
}, day time.Time, n int) error {
	posted := day.Add(time.Hour)
	src := &rowsSrc{n: n, posted: posted}
	got, err := pool.CopyFrom(ctx, pgx.Identifier{"recon", "expected"},
		[]string{"psp_reference", "record_type", "reference", "currency", "gross_minor", "posted_at"}, src)
	if err != nil {
		return fmt.Errorf("copy expected rows: %w", err)
	}
	if got != int64(n) {
		return fmt.Errorf("copied %d of %d rows", got, n)
	}
	return nil
}

type rowsSrc struct {
	n, i   int
	posted time.Time
}

func (s *rowsSrc) Next() bool { s.i++; return s.i <= s.n }
func (s *rowsSrc) Values() ([]any, error) {
	i := s.i - 1
	return []any{ref(i), "charge", fmt.Sprintf("co_%010d", i), currencies[i%len(currencies)], gross(i), s.posted}, nil
}
func (s *rowsSrc) Err() error { return nil }

func machine(ctx context.Context, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) map[string]any {
	m := map[string]any{"nproc": runtime.NumCPU(), "goos": runtime.GOOS + "/" + runtime.GOARCH, "go_version": runtime.Version(),
		"shared": "2 cores shared with other engineers' builds and tests"}
	var v string
	if err := pool.QueryRow(ctx, `SELECT version()`).Scan(&v); err == nil {
		m["postgresql_version"] = v
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range splitLines(b) {
			if len(line) > 10 && line[:10] == "model name" {
				m["cpu_model"] = line[13:]
				break
			}
		}
	}
	return m
}

func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}

var _ = io.EOF

func command(cfg Config) string {
	c := fmt.Sprintf("go run ./bench/reconbench -lines %d -chunk %d", cfg.Lines, cfg.ChunkLines)
	if cfg.Out != "" {
		c += " -out " + cfg.Out
	}
	return c
}
