package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/paypipe/paypipe/internal/migrate"
)

func TestMigrateStatusAndUp(t *testing.T) {
	t.Parallel()
	vars := freshEnv(t)
	status := func() []migrate.Status {
		t.Helper()
		r := paypipe(t, vars, "migrate", "status", "-o", "json")
		if r.code != exitOK {
			t.Fatalf("migrate status: %+v", r)
		}
		var st []migrate.Status
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("migrate status -o json: %v\n%s", err, r.stdout)
		}
		return st
	}

	st := status()
	if len(st) != 2 || st[0].Schema != "demo" || st[0].Version != 1 || st[1].Version != 2 || st[0].Applied || st[1].Applied {
		t.Fatalf("fresh database: %+v", st)
	}
	r := paypipe(t, vars, "migrate", "up")
	if r.code != exitOK || !strings.Contains(r.stdout, "demo: at version 2") {
		t.Fatalf("migrate up: %+v", r)
	}
	for _, m := range status() {
		if !m.Applied || m.At == "" {
			t.Fatalf("after up: %+v", m)
		}
	}
	// Again: nothing to do, same answer.
	if r := paypipe(t, vars, "migrate", "up", "demo"); r.code != exitOK || !strings.Contains(r.stdout, "demo: at version 2") {
		t.Fatalf("second migrate up: %+v", r)
	}
	r = paypipe(t, vars, "migrate", "status")
	if r.code != exitOK || !strings.Contains(r.stdout, "00002_orders.sql") || strings.Contains(r.stdout, "pending") {
		t.Fatalf("migrate status (text): %+v", r)
	}
}
