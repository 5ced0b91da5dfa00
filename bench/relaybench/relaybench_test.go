package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestQuick runs every scenario with tiny sizes against both relays, under
// both JetStream sync settings (paypipe in both publish modes under sync
// always). Run fails on any lost or duplicated event, so this is the
// bench's own exactly-once check as much as a smoke test of its code.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("relaybench smoke test: skipped with -short")
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		t.Fatal("DATABASE_URL is not set: run the tests with `go tool task test` (it starts PostgreSQL), or export DATABASE_URL=$(scripts/pg.sh url)")
	}
	cfg := DefaultConfig().QuickSizes()
	cfg.DatabaseURL = url
	cfg.SatFor = 500 * time.Millisecond
	cfg.PacedFor = time.Second
	cfg.Wake = false
	cfg.StoreDir = t.TempDir()
	cfg.Log = testWriter{t}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s (%.1fs)", rep.Summary.Line, time.Since(began).Seconds())

	want := map[string]bool{}
	for _, sync := range cfg.Syncs {
		for _, k := range kindsFor(cfg, sync) {
			for _, sc := range []string{"drain", "paced", "saturation"} {
				want[sync+" "+k.Name+" "+sc] = false
			}
		}
	}
	for _, f := range rep.Figures {
		if f.Scenario == "writers-only" {
			continue
		}
		key := f.Sync + " " + f.Relay + " " + f.Scenario
		if _, ok := want[key]; !ok {
			t.Errorf("unexpected figure %s", key)
			continue
		}
		want[key] = true
		if !f.Verified || f.Error != "" {
			t.Errorf("%s: not verified exactly once: %s", key, f.Error)
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("missing figure %s", k)
		}
	}
	for _, k := range []string{"default paypipe/async drain", "default forwarder drain", "always paypipe/atomic-batch drain"} {
		if f := rep.find(strings.Fields(k)[0], strings.Fields(k)[1], "drain"); f == nil || f.Drain.EPS <= 0 {
			t.Errorf("%s: no rate", k)
		}
	}
	if rep.Summary.RelayEPS <= 0 || rep.Summary.PeerEPS <= 0 || rep.Summary.WritersEPS <= 0 {
		t.Errorf("summary incomplete: %s", rep.Summary.Line)
	}
	if rep.RelayLogErrors != 0 {
		t.Errorf("relays logged %d warnings/errors", rep.RelayLogErrors)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, n := range []int{0, 7, 19_999, 1_234_567_890} {
		p := payload(n)
		if len(p) != payloadSize {
			t.Fatalf("payload(%d) is %d bytes", n, len(p))
		}
		got, ok := parseN(p)
		if !ok || got != n {
			t.Fatalf("parseN(payload(%d)) = %d, %v", n, got, ok)
		}
	}
	if _, ok := parseN([]byte(`{"other":1}`)); ok {
		t.Fatal("parseN accepted a foreign payload")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
