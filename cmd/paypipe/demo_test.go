package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the README's first command against a fresh database, twice:
// the second run must measure only its own orders.
func TestDemo(t *testing.T) {
	t.Parallel()
	vars := freshEnv(t)
	for run := 1; run <= 2; run++ {
		start := time.Now()
		r := paypipe(t, vars, "demo")
		if r.code != exitOK {
			t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", run, r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{
			"20 placed, 20 published, 20 applied exactly once: OK",
			"JetStream acknowledged it as a duplicate and stored nothing: OK",
			"the inbox skipped the replay and the totals are unchanged: OK",
			"paypipe demo: OK",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("run %d: output lacks %q:\n%s", run, want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "FAILED") {
			t.Errorf("run %d: a check failed:\n%s", run, r.stdout)
		}
		if el := time.Since(start); el > time.Minute {
			t.Errorf("run %d took %s; the demo must finish in under a minute", run, el)
		}
		t.Logf("run %d: %s", run, time.Since(start))
	}
	// The NATS store of each run is removed.
	entries, err := os.ReadDir(vars["PAYPIPE_DATA_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("data dir not cleaned up: %v", entries)
	}
}
