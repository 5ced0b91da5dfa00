package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestQuick runs the bench with tiny sizes against the real binary: it
// builds paypipe, starts `paypipe serve` on a fresh database, pays through
// the whole pipeline and reads the results back. Run itself fails if any
// checkout is refused, fails or does not complete, so this is also a smoke
// test of the pay-in path under concurrent clients.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("e2ebench smoke test: skipped with -short")
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		t.Skip("DATABASE_URL is not set (export DATABASE_URL=$(bash scripts/pg.sh url))")
	}
	cfg := DefaultConfig().QuickSizes()
	cfg.DatabaseURL = url
	cfg.Log = testWriter{t}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s (%.1fs)", rep.Summary.Line, time.Since(began).Seconds())

	sat, paced := rep.find(cfg.Modes[0], ScenarioSaturation), rep.findPaced(cfg.Modes[0], cfg.PacedRate)
	if sat == nil || paced == nil {
		t.Fatalf("missing figures: %+v", rep.Figures)
	}
	wantPaced := int(cfg.PacedFor.Seconds() * float64(cfg.PacedRate))
	for _, c := range []struct {
		f    *Figure
		want int
	}{{sat, cfg.Checkouts}, {paced, wantPaced}} {
		f := c.f
		if f.Requests != c.want || f.Accepted != c.want || f.Completed != c.want {
			t.Errorf("%s: %d sent, %d accepted, %d completed; want %d of each", f.Scenario, f.Requests, f.Accepted, f.Completed, c.want)
		}
		if f.Latency.N != f.Completed || f.Latency.P50 <= 0 || f.Latency.P99 < f.Latency.P50 || f.Latency.Max < f.Latency.P99 {
			t.Errorf("%s: latency %+v", f.Scenario, f.Latency)
		}
		// Completion is after acceptance: a checkout cannot complete
		// before its API transaction.
		if f.Latency.Min < f.Stages["request→created"].Min || f.Latency.Min <= 0 {
			t.Errorf("%s: fastest completion %.1f ms, fastest API transaction %.1f ms", f.Scenario, f.Latency.Min, f.Stages["request→created"].Min)
		}
		if f.E2EPPS <= 0 || f.AcceptPPS < f.E2EPPS*0.5 {
			t.Errorf("%s: e2e %.1f/s, accept %.1f/s", f.Scenario, f.E2EPPS, f.AcceptPPS)
		}
		// Every completed checkout went through the API, the PSP's answer
		// and ledger + wallet, each a transaction, each writing events.
		if f.Commits.XactCommit < int64(f.Completed) || f.Commits.NetPerPayment < 1 || f.EventsPerPayment < 1 {
			t.Errorf("%s: commits %+v, events/payment %.2f", f.Scenario, f.Commits, f.EventsPerPayment)
		}
		for _, schema := range []string{"payment", "executor", "ledger", "wallet"} {
			found := false
			for k := range f.EventsBySubject {
				found = found || strings.HasPrefix(k, schema+" ")
			}
			if !found {
				t.Errorf("%s: no events from %s's outbox: %v", f.Scenario, schema, f.EventsBySubject)
			}
		}
	}
	if paced.OfferedPPS != float64(cfg.PacedRate) {
		t.Errorf("paced offered %.0f/s, want %d", paced.OfferedPPS, cfg.PacedRate)
	}
	if rep.CommitProbe == nil || rep.CommitProbe.PerSecond <= 0 || len(rep.IdleCommits) != 1 {
		t.Errorf("probe %+v, idle %+v", rep.CommitProbe, rep.IdleCommits)
	}
	if !regexp.MustCompile(`^e2e_pps=\d+ p50_ms=\d+ p99_ms=\d+ commits_per_payment=\d+\.\d events_per_payment=\d+\.\d$`).MatchString(rep.Summary.Line) {
		t.Errorf("summary line %q", rep.Summary.Line)
	}
	if len(rep.Targets) != 2 {
		t.Errorf("targets %+v", rep.Targets)
	}

	// The JSON written is the report.
	path := filepath.Join(t.TempDir(), "results", "e2e.json")
	if err := writeJSON(path, rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Summary != rep.Summary || len(back.Figures) != len(rep.Figures) || back.Machine.NumCPU == 0 || back.Machine.PostgreSQL == "" {
		t.Errorf("JSON round trip: %+v", back.Summary)
	}

	// Nothing is left behind: the child stopped cleanly, its database is
	// dropped.
	if len(rep.Children) != 1 {
		t.Fatalf("children %+v", rep.Children)
	}
	c := rep.Children[0]
	if c.Stop != "exited cleanly after SIGTERM" || c.PID == 0 {
		t.Errorf("paypipe serve: %+v", c)
	}
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	conn, err := pgx.Connect(cctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(cctx)
	var left int
	if err := conn.QueryRow(cctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, c.Database).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("database %s not dropped", c.Database)
	}
}

func TestLatencyOf(t *testing.T) {
	var v []float64
	for i := 1; i <= 200; i++ {
		v = append(v, float64(i))
	}
	l := latencyOf(v)
	if l.N != 200 || l.P50 != 100 || l.P90 != 180 || l.P99 != 198 || l.Max != 200 || l.Min != 1 || l.Mean != 100.5 {
		t.Errorf("latencyOf(1..200) = %+v", l)
	}
	if l := latencyOf(nil); l != (Latency{}) {
		t.Errorf("latencyOf(nil) = %+v", l)
	}
}

// TestChildEnv: the child never inherits a setting that would send it to
// another broker, PSP or database than the bench's.
func TestChildEnv(t *testing.T) {
	t.Setenv("NATS_URL", "nats://elsewhere:4222")
	t.Setenv("PAYPIPE_PSP_URL", "https://psp.example")
	t.Setenv("LEDGER_DATABASE_URL", "postgres://elsewhere/ledger")
	env := childEnv(childConfig{DatabaseURL: "postgres://bench/db", DataDir: "/tmp/d", RelayMode: "async"}, "127.0.0.1:1", "127.0.0.1:2")
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := got[k]; dup {
			t.Errorf("%s set twice", k)
		}
		got[k] = v
	}
	for _, k := range []string{"NATS_URL", "PAYPIPE_PSP_URL", "LEDGER_DATABASE_URL"} {
		if v, ok := got[k]; ok {
			t.Errorf("%s=%s passed to the child", k, v)
		}
	}
	want := map[string]string{"DATABASE_URL": "postgres://bench/db", "PAYPIPE_HTTP_ADDR": "127.0.0.1:1", "PAYPIPE_PSPSIM_ADDR": "127.0.0.1:2",
		"PAYPIPE_DATA_DIR": "/tmp/d", "PAYPIPE_LOG_LEVEL": "warn", "PAYPIPE_RELAY_MODE": "async"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
