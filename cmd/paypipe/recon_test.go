package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/reconciler"
)

// reconCLI runs the CLI with the recon command registered (whether or not
// root.go registers it yet) and maps exit codes as run() does.
func reconCLI(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	e := &env{getenv: func(k string) string { return vars[k] }, stdout: &out, stderr: &errb}
	root := newRootCmd(e)
	if c, _, err := root.Find([]string{"recon"}); err != nil || c == root {
		root.AddCommand(newReconCmd(e))
	}
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	code := exitOK
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(&errb, "paypipe: %v\n", err)
		var ue usageError
		var ec exitCodeError
		switch {
		case errors.As(err, &ec):
			code = ec.code
		case errors.As(err, &ue):
			code = exitUsage
		default:
			code = exitError
		}
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func TestReconCLI(t *testing.T) {
	vars := freshEnv(t)
	vars["PAYPIPE_RECON_REPORT_DIR"] = t.TempDir()
	dir := t.TempDir()

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"recon", "run"}, "--date is required"},
		{[]string{"recon", "run", "--date", "10/03/2026"}, "want YYYY-MM-DD"},
		{[]string{"recon", "run", "--date", "2026-03-10", "-o", "xml"}, "--output"},
		{[]string{"recon", "queue", "--status", "closed"}, "--status"},
		{[]string{"recon", "queue", "--queue", "ops"}, "--queue"},
		{[]string{"recon", "queue", "resolve"}, "one mismatch ID"},
		{[]string{"recon", "queue", "resolve", "x"}, "--note is required"},
	} {
		r := reconCLI(t, vars, c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, r.code, r.stderr, c.want)
		}
	}

	// A file with one good charge the ledger does not know as a refund (no
	// PSP needed) and an unreadable line.
	fee, _ := money.Fee(1000, 290)
	file := filepath.Join(dir, "settlement-2026-03-10.csv")
	body := reconciler.Header + "\n" +
		"opening_balance,2026-03-10,,,USD,0,0,0,\n" +
		"refund,2026-03-10,re_x,rf_x,USD,-500,0,-500,2026-03-10T10:00:00Z\n" +
		fmt.Sprintf("charge,2026-03-10,pay_y,co_y,USD,1000,%d,1,2026-03-10T11:00:00Z\n", fee) +
		"closing_balance,2026-03-10,,,USD,0,0,-500,\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	r := reconCLI(t, vars, "recon", "run", "--date", "2026-03-10", "--file", file, "--skip-wallet-check")
	if r.code != 0 || !strings.Contains(r.stdout, "unknown_reference") || !strings.Contains(r.stdout, "malformed_line") {
		t.Fatalf("run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("recon run:\n%s", r.stdout)
	r = reconCLI(t, vars, "recon", "run", "--date", "2026-03-10", "--file", file, "--skip-wallet-check", "--fail-on-mismatch", "-o", "json")
	var sum reconciler.Summary
	if r.code != exitMismatch || json.Unmarshal([]byte(r.stdout), &sum) != nil || sum.MismatchTotal != 2 || sum.Lines != 2 {
		t.Fatalf("rerun with --fail-on-mismatch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = reconCLI(t, vars, "recon", "report", "--date", "2026-03-10", "-o", "csv")
	if r.code != 0 || !strings.HasPrefix(r.stdout, strings.Join(reconciler.MismatchCSVHeader, ",")) || strings.Count(r.stdout, "\n") != 3 {
		t.Fatalf("report csv: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = reconCLI(t, vars, "recon", "report", "--date", "2026-03-11")
	if r.code != exitError || !strings.Contains(r.stderr, "no completed run") {
		t.Fatalf("report of a date never run: exit %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(vars["PAYPIPE_RECON_REPORT_DIR"], "recon-2026-03-10-mismatches.csv")); err != nil {
		t.Fatalf("report dir: %v", err)
	}
	r = reconCLI(t, vars, "recon", "queue", "--queue", "investigation", "-o", "json")
	var ms []reconciler.Mismatch
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ms) != nil || len(ms) != 2 {
		t.Fatalf("queue: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = reconCLI(t, vars, "recon", "queue", "resolve", ms[0].ID, "--note", "PSP test line", "--by", "ana")
	if r.code != 0 || !strings.Contains(r.stdout, "resolved "+ms[0].ID) {
		t.Fatalf("resolve: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = reconCLI(t, vars, "recon", "queue", "resolve", ms[0].ID, "--note", "again")
	if r.code != exitError || !strings.Contains(r.stderr, "already resolved") {
		t.Fatalf("resolve twice: exit %d %s", r.code, r.stderr)
	}
	r = reconCLI(t, vars, "recon", "queue", "--status", "resolved")
	if r.code != 0 || !strings.Contains(r.stdout, ms[0].ID) || !strings.Contains(r.stdout, contracts.QueueInvestigation) {
		t.Fatalf("queue resolved: exit %d\n%s", r.code, r.stdout)
	}
	t.Logf("recon queue --status resolved:\n%s", r.stdout)
}
