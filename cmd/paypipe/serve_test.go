package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paypipe/paypipe/internal/testenv"
)

// TestServe starts `paypipe serve` (every service, the embedded broker and
// PSP simulator) in-process, checks its endpoints, then cancels its context
// as SIGTERM would and expects a clean exit.
func TestServe(t *testing.T) {
	t.Parallel()
	vars := freshEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve"}, func(k string) string { return vars[k] }, &out, &errb)
	}()

	addrRE := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/metrics`)
	var base string
	testenv.Eventually(t, 30*time.Second, "serve to report it is serving", func() (bool, error) {
		select {
		case code := <-done:
			t.Fatalf("serve exited early with %d: %s", code, errb.String())
		default:
		}
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			base = "http://" + m[1]
			return true, nil
		}
		return false, nil
	})
	if !strings.Contains(out.String(), "serving "+serviceNames(registry())+" ") {
		t.Errorf("serve did not name every service: %s", out.String())
	}
	for path, want := range map[string]struct {
		code int
		body string
	}{
		"/readyz":  {http.StatusOK, `"status":"ready"`},
		"/healthz": {http.StatusOK, `"status":"ok"`},
		"/metrics": {http.StatusOK, `paypipe_outbox_backlog{schema="payment"} 0`},
		// The payment API is mounted and asks for a key.
		"/v1/checkouts": {http.StatusUnauthorized, `"status":401`},
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want.code || !strings.Contains(string(body), want.body) {
			t.Errorf("%s: %d %s; want %d containing %s", path, resp.StatusCode, body, want.code, want.body)
		}
	}

	// A second serve on the same data directory must refuse the embedded store.
	r := paypipe(t, vars, "serve")
	if r.code != exitError || !strings.Contains(r.stderr, "in use by another paypipe process") {
		t.Errorf("second serve on the same store: %+v", r)
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("serve exited %d after cancel: %s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s of its context ending")
	}
	if !strings.Contains(errb.String(), `"msg":"paypipe stopped"`) {
		t.Errorf("no clean-stop log line:\n%s", errb.String())
	}
}
