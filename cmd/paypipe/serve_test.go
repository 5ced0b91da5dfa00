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

// TestServe starts `paypipe serve` in-process, checks its endpoints, then
// cancels its context as SIGTERM would and expects a clean exit.
func TestServe(t *testing.T) {
	t.Parallel()
	vars := freshEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "demo"}, func(k string) string { return vars[k] }, &out, &errb)
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
	for path, want := range map[string]string{
		"/readyz":  `"status":"ready"`,
		"/healthz": `"status":"ok"`,
		"/metrics": `paypipe_outbox_backlog{schema="demo"} 0`,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %s; want 200 containing %s", path, resp.StatusCode, body, want)
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
