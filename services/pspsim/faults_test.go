package pspsim_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/pspsim"
)

// TestFaultsAroundTheCharge: whatever the PSP does around its commit, the
// client sees an unknown outcome and never a failure, and a retry with the
// same key ends with exactly one charge.
func TestFaultsAroundTheCharge(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{})
	ctx := context.Background()
	// The hung response is met by a client that waits 300ms; every other
	// call uses the default timeout, so a slow CI machine cannot fake an
	// unknown outcome.
	impatient, err := psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: s.url, APIKey: s.apiKey, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	// 500 before anything happened: nothing exists; the retry charges once.
	s.setFaults(pspsim.Faults{FailBeforeChargeRate: 1})
	req := direct("before", psp.MethodCardSucceeds)
	if _, err := s.client.CreatePayment(ctx, req); !errors.Is(err, psp.ErrUnknownOutcome) || psp.IsPermanent(err) {
		t.Fatalf("fail before charge: %v", err)
	}
	if _, err := s.client.FindByReference(ctx, "before"); !psp.IsNotFound(err) || len(s.charges("before")) != 0 {
		t.Fatalf("a failure before the charge left a payment or a charge: %v", err)
	}
	s.setFaults(pspsim.Faults{})
	if p, err := s.client.CreatePayment(ctx, req); err != nil || p.Status != psp.StatusSucceeded || len(s.charges("before")) != 1 {
		t.Fatalf("retry: %+v, %v, %d charges", p, err, len(s.charges("before")))
	}

	// 500 after the commit, and a response held past the client's timeout:
	// the charge exists; a retry with the same key (the fault still on)
	// replays the succeeded payment without charging again.
	for _, c := range []struct {
		name   string
		faults pspsim.Faults
		client *psp.HTTPClient
		cause  error
	}{
		{"after", pspsim.Faults{FailAfterChargeRate: 1}, s.client, nil},
		{"hang", pspsim.Faults{HangAfterChargeRate: 1, HangFor: pspsim.Duration(5 * time.Second)}, impatient, context.DeadlineExceeded},
	} {
		s.setFaults(c.faults)
		req := direct(c.name, psp.MethodCardSucceeds)
		start := time.Now()
		_, err := c.client.CreatePayment(ctx, req)
		if !errors.Is(err, psp.ErrUnknownOutcome) || (c.cause != nil && !errors.Is(err, c.cause)) {
			t.Fatalf("%s: %v", c.name, err)
		}
		if elapsed := time.Since(start); elapsed > 4*time.Second {
			t.Fatalf("%s: the client waited %s: the response was not cut by its timeout", c.name, elapsed)
		}
		// The PSP finishes what it started even when the caller hangs up.
		var ch []pspsim.Charge
		testenv.Eventually(t, 10*time.Second, c.name+": the charge committed", func() (bool, error) {
			ch = s.charges(c.name)
			return len(ch) == 1, nil
		})
		found, err := s.client.FindByReference(ctx, c.name)
		if err != nil || found.Status != psp.StatusSucceeded || found.ID != ch[0].PaymentID {
			t.Fatalf("%s: lookup %+v, %v", c.name, found, err)
		}
		p, err := s.client.CreatePayment(ctx, req)
		if err != nil || p.ID != found.ID || p.Status != psp.StatusSucceeded {
			t.Fatalf("%s: retry %+v, %v", c.name, p, err)
		}
		if n := len(s.charges(c.name)); n != 1 {
			t.Fatalf("%s: %d charges after the retry", c.name, n)
		}
	}

	// A hosted create hit by a 500 after its commit: the retry returns the
	// same page.
	s.setFaults(pspsim.Faults{FailAfterChargeRate: 1})
	if _, err := s.client.CreatePayment(ctx, hosted("hosted-after", 100, "EUR")); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("hosted after commit: %v", err)
	}
	first, err := s.client.FindByReference(ctx, "hosted-after")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.client.CreatePayment(ctx, hosted("hosted-after", 100, "EUR")); err != nil || p.ID != first.ID || p.RedirectURL != first.RedirectURL {
		t.Fatalf("hosted retry: %+v, %v", p, err)
	}

	// Declines on demand, and latency.
	s.setFaults(pspsim.Faults{DeclineRate: 1, LatencyMS: 150})
	start := time.Now()
	p, err := s.client.ConfirmPayment(ctx, first.ID, psp.MethodCardSucceeds, "confirm-declined")
	if err != nil || p.Status != psp.StatusFailed || p.FailureCode != "card_declined" || len(s.charges("hosted-after")) != 0 {
		t.Fatalf("forced decline: %+v, %v", p, err)
	}
	if time.Since(start) < 150*time.Millisecond {
		t.Fatalf("latency_ms 150 answered in %s", time.Since(start))
	}

	var view pspsim.FaultsView
	s.admin(http.MethodGet, "/admin/faults", nil, &view)
	want := pspsim.Injected{Declines: 1, FailBeforeCharge: 1, FailAfterCharge: 2, HangAfterCharge: 1}
	if view.Injected != want || view.DeclineRate != 1 || view.LatencyMS != 150 {
		t.Fatalf("GET /admin/faults: %+v, want injected %+v", view, want)
	}
}

// TestFaultsAdmin: the admin API needs its own key, validates, and accepts
// its own GET body back.
func TestFaultsAdmin(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{noRun: true, cfg: func(c *pspsim.Config) {
		c.Faults = pspsim.Faults{Seed: 9, DropWebhookRate: 0.25}
	}})
	var view pspsim.FaultsView
	s.admin(http.MethodGet, "/admin/faults", nil, &view)
	if view.Seed != 9 || view.DropWebhookRate != 0.25 || view.HangFor != pspsim.Duration(15*time.Second) {
		t.Fatalf("faults from Config: %+v", view)
	}
	for _, body := range []string{`{"decline_rate": 1.5}`, `{"decline_rate": -0.1}`, `{"latency_ms": -1}`, `{"latency_ms": 9223372036854775}`, `{"hang_for": "1h"}`, `{"hang_for": 5}`, `{"nosuch": 1}`} {
		if st, _, b := s.raw(http.MethodPost, "/admin/faults", s.adminKey, nil, body); st != http.StatusBadRequest {
			t.Errorf("%s: %d %s", body, st, b)
		}
	}
	st, _, b := s.raw(http.MethodGet, "/admin/faults", s.adminKey, nil, "")
	if st != http.StatusOK {
		t.Fatal(st)
	}
	if st, _, b := s.raw(http.MethodPost, "/admin/faults", s.adminKey, nil, string(b)); st != http.StatusOK || !strings.Contains(string(b), `"drop_webhook_rate":0.25`) {
		t.Fatalf("posting a GET body back: %d %s", st, b)
	}

	closed := newSim(t, simOptions{noRun: true, cfg: func(c *pspsim.Config) { c.AdminKey = "" }})
	for _, key := range []string{"-", closed.apiKey, "anything"} {
		if st, _, _ := closed.raw(http.MethodGet, "/admin/charges", key, nil, ""); st != http.StatusUnauthorized {
			t.Errorf("admin without AdminKey, auth %q: %d", key, st)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{noRun: true})
	good := pspsim.Config{APIKey: "k", WebhookURL: "http://127.0.0.1:1/hooks", WebhookSecrets: []string{secretNew}}
	if _, err := pspsim.New(good, s.pool, nil); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	for name, mutate := range map[string]func(*pspsim.Config){
		"no API key":          func(c *pspsim.Config) { c.APIKey = "" },
		"admin key = API key": func(c *pspsim.Config) { c.AdminKey = c.APIKey },
		"no webhook URL":      func(c *pspsim.Config) { c.WebhookURL = "" },
		"relative URL":        func(c *pspsim.Config) { c.WebhookURL = "/hooks" },
		"no secret":           func(c *pspsim.Config) { c.WebhookSecrets = nil },
		"short secret":        func(c *pspsim.Config) { c.WebhookSecrets = []string{"short"} },
		"bad public URL":      func(c *pspsim.Config) { c.PublicURL = "ftp://x" },
		"negative TTL":        func(c *pspsim.Config) { c.HostedTTL = -time.Second },
		"factor below 1":      func(c *pspsim.Config) { c.WebhookBackoff.Multiplier = 0.5 },
		"max below initial": func(c *pspsim.Config) {
			c.WebhookBackoff = retry.Policy{Strategy: retry.Exponential, Initial: time.Second, Max: time.Millisecond}
		},
		"backoff gives up": func(c *pspsim.Config) { c.WebhookBackoff.MaxAttempts = 5 },
		"no strategy":      func(c *pspsim.Config) { c.WebhookBackoff = retry.Policy{Initial: time.Second} },
		"batch too large":  func(c *pspsim.Config) { c.WebhookBatchSize = 5000 },
		"rate above 1":     func(c *pspsim.Config) { c.Faults.DropWebhookRate = 2 },
	} {
		c := good
		mutate(&c)
		if _, err := pspsim.New(c, s.pool, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
