package httpserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/internal/httpserver"
	"github.com/paypipe/paypipe/internal/testenv"
)

func start(t *testing.T, cfg httpserver.Config) string {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s, err := httpserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if s.Err() != nil {
			t.Errorf("server error: %v", s.Err())
		}
	})
	return "http://" + s.Addr()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func ready(t *testing.T, base string) (int, httpserver.ReadyResponse) {
	t.Helper()
	code, body := get(t, base+"/readyz")
	var r httpserver.ReadyResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	return code, r
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.DB(t)
	ns := testenv.NATS(t)
	nc := testenv.Connect(t, ns)
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "paypipe_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	base := start(t, httpserver.Config{Registry: reg, Checks: []httpserver.Check{
		httpserver.PostgresCheck(pool), httpserver.NATSCheck(nc),
	}})

	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d %s", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "paypipe_test_things_total 3") {
		t.Fatalf("metrics: %d\n%s", code, body)
	}
	if strings.Contains(body, "go_goroutines") {
		t.Error("metrics must expose the given registry only, not the global one")
	}
	if code, r := ready(t, base); code != http.StatusOK || r.Status != "ready" || len(r.OK) != 2 {
		t.Fatalf("readyz: %d %+v", code, r)
	}
	resp, err := http.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d, want 405", resp.StatusCode)
	}

	// The broker goes away: not ready, and the body says which dependency.
	ns.Stop()
	testenv.Eventually(t, 10*time.Second, "readyz to report nats down", func() (bool, error) {
		code, r := ready(t, base)
		return code == http.StatusServiceUnavailable && r.Down["nats"] != "" && r.Down["postgres"] == "", nil
	})
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Error("healthz must not depend on NATS")
	}
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "readyz to recover", func() (bool, error) {
		code, _ := ready(t, base)
		return code == http.StatusOK, nil
	})

	// The database goes away.
	pool.Close()
	code, r := ready(t, base)
	if code != http.StatusServiceUnavailable || r.Down["postgres"] == "" || r.Status != "unavailable" {
		t.Fatalf("readyz with a closed pool: %d %+v", code, r)
	}
}

func TestHungCheckIsBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	base := start(t, httpserver.Config{Registry: prometheus.NewRegistry(), Checks: []httpserver.Check{
		// Ignores its context on purpose: the server must still answer in time.
		{Name: "stuck", Fn: func(context.Context) error { <-release; return nil }},
	}})
	t0 := time.Now()
	code, r := ready(t, base)
	if code != http.StatusServiceUnavailable || !strings.Contains(r.Down["stuck"], "no answer") {
		t.Fatalf("readyz: %d %+v", code, r)
	}
	if el := time.Since(t0); el > httpserver.CheckTimeout+time.Second {
		t.Fatalf("readyz took %s", el)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	if _, err := httpserver.New(httpserver.Config{Addr: ":0"}); err == nil {
		t.Error("no registry: want error")
	}
	if _, err := httpserver.New(httpserver.Config{Addr: ":0", Registry: prometheus.NewRegistry(),
		Checks: []httpserver.Check{{Name: "a", Fn: func(context.Context) error { return nil }}, {Name: "a", Fn: func(context.Context) error { return nil }}}}); err == nil {
		t.Error("duplicate check names: want error")
	}
	s, err := httpserver.New(httpserver.Config{Addr: "256.0.0.1:1", Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("bad address: Start must fail")
	}
}
