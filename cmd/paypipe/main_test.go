package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paypipe/paypipe/internal/testenv"
)

type result struct {
	code           int
	stdout, stderr string
}

// paypipe runs the CLI in-process with exactly the environment vars, nothing
// from the process environment.
func paypipe(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, func(k string) string { return vars[k] }, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// freshEnv is the environment of a test with its own empty database, data
// directory and an HTTP port picked by the kernel.
func freshEnv(t *testing.T) map[string]string {
	t.Helper()
	_, url := testenv.DB(t)
	return map[string]string{
		"DATABASE_URL":        url,
		"PAYPIPE_DATA_DIR":    t.TempDir(),
		"PAYPIPE_HTTP_ADDR":   "127.0.0.1:0",
		"PAYPIPE_PSPSIM_ADDR": "127.0.0.1:0",
		// Tests run payouts and reconciliations themselves; the schedules'
		// catch-up at start would be work no test looks at.
		"PAYPIPE_PAYOUT_SCHEDULE": "off",
		"PAYPIPE_RECON_AT":        "off",
	}
}

// lockedBuffer lets a test read what a running command has written so far.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestHelpAndUsageErrors(t *testing.T) {
	t.Parallel()
	r := paypipe(t, nil, "--help")
	if r.code != exitOK || !strings.Contains(r.stdout, "serve") || !strings.Contains(r.stdout, "outbox") {
		t.Fatalf("--help: %+v", r)
	}
	for _, args := range [][]string{
		{"nosuch"},
		{"--nosuch"},
		{"serve", "nosuch"},
		{"migrate"},
		{"migrate", "status", "-o", "yaml"},
		{"outbox", "status", "--schema", "nosuch"},
		{"outbox", "redrive"},
		{"outbox", "redrive", "--since", "yesterday"},
		{"demo", "--timeout", "0s"},
		{"demo", "extra"},
	} {
		r := paypipe(t, nil, args...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "paypipe: ") {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and a message", args, r.code, r.stderr, exitUsage)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	r := paypipe(t, nil, "migrate", "status")
	if r.code != exitError || !strings.Contains(r.stderr, "DATABASE_URL is not set") {
		t.Errorf("no DATABASE_URL: %+v", r)
	}
	r = paypipe(t, map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x", "PAYPIPE_RELAY_MODE": "turbo"}, "serve")
	if r.code != exitError || !strings.Contains(r.stderr, "PAYPIPE_RELAY_MODE") {
		t.Errorf("bad relay mode: %+v", r)
	}
	r = paypipe(t, map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x?connect_timeout=1"}, "outbox", "status")
	if r.code != exitError || !strings.Contains(r.stderr, "does not answer") {
		t.Errorf("unreachable database: %+v", r)
	}
}
