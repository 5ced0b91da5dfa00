package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/paypipe/paypipe/internal/migrate"
)

func TestMigrateStatusAndUp(t *testing.T) {
	t.Parallel()
	vars := freshEnv(t)
	status := func(args ...string) []migrate.Status {
		t.Helper()
		r := paypipe(t, vars, append([]string{"migrate", "status", "-o", "json"}, args...)...)
		if r.code != exitOK {
			t.Fatalf("migrate status: %+v", r)
		}
		var st []migrate.Status
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("migrate status -o json: %v\n%s", err, r.stdout)
		}
		return st
	}

	// Every service schema starts at version 1 (outbox and inbox, in Go)
	// and continues with its own SQL from version 2, all pending.
	svcs := registry()
	latest := map[string]int64{}
	var order []string
	for _, m := range status() {
		if m.Applied || m.At != "" {
			t.Fatalf("fresh database: %+v applied", m)
		}
		if _, seen := latest[m.Schema]; !seen {
			order = append(order, m.Schema)
			if m.Version != 1 {
				t.Fatalf("fresh database: %s starts at version %d, want 1", m.Schema, m.Version)
			}
		} else if m.Version != latest[m.Schema]+1 {
			t.Fatalf("fresh database: %s version %d follows %d", m.Schema, m.Version, latest[m.Schema])
		}
		latest[m.Schema] = m.Version
	}
	if got, want := strings.Join(order, " "), strings.Join(schemaNames(svcs), " "); got != want {
		t.Fatalf("fresh database: schemas %q, want %q", got, want)
	}
	for _, s := range svcs {
		if latest[s.schema.Name()] < 2 {
			t.Errorf("%s has no SQL migration", s.name)
		}
	}
	if st := status("payment"); len(st) != int(latest["payment"]) || st[0].Schema != "payment" {
		t.Fatalf("status of payment alone: %+v", st)
	}

	r := paypipe(t, vars, "migrate", "up")
	if r.code != exitOK {
		t.Fatalf("migrate up: %+v", r)
	}
	for _, s := range svcs {
		if want := fmt.Sprintf("%s: at version %d\n", s.schema.Name(), latest[s.schema.Name()]); !strings.Contains(r.stdout, want) {
			t.Errorf("migrate up: no %q in\n%s", want, r.stdout)
		}
	}
	for _, m := range status() {
		if !m.Applied || m.At == "" {
			t.Fatalf("after up: %+v", m)
		}
	}
	// Again: nothing to do, same answer, for the one service asked about.
	want := fmt.Sprintf("payment: at version %d\n", latest["payment"])
	if r := paypipe(t, vars, "migrate", "up", "payment"); r.code != exitOK || r.stdout != want {
		t.Fatalf("second migrate up: %+v, want stdout %q", r, want)
	}
	r = paypipe(t, vars, "migrate", "status")
	if r.code != exitOK || !strings.Contains(r.stdout, "00002_payment.sql") || !strings.Contains(r.stdout, "00002_ledger.sql") || strings.Contains(r.stdout, "pending") {
		t.Fatalf("migrate status (text): %+v", r)
	}
}

func schemaNames(svcs []service) []string {
	out := make([]string, len(svcs))
	for i, s := range svcs {
		out[i] = s.schema.Name()
	}
	return out
}
