package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/psp"
)

// TestPSPSim runs `paypipe pspsim` in-process on a free port: flags and
// environment, a direct charge through psp.HTTPClient, a signed webhook to a
// receiver, faults from flags, then a clean stop on cancel.
func TestPSPSim(t *testing.T) {
	t.Parallel()
	const secret = "whsec_cmd_test_0123456789"
	var hooks atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := psp.VerifySignature(r.Header.Get(psp.SignatureHeader), body, []string{secret}, time.Now(), psp.DefaultTolerance); err != nil {
			t.Errorf("webhook: %v", err)
		}
		hooks.Add(1)
	}))
	t.Cleanup(receiver.Close)
	vars := freshEnv(t)
	vars["PSPSIM_API_KEY"] = "sk_test_cmd"
	vars["PSPSIM_ADMIN_KEY"] = "sk_admin_cmd"
	vars["PSPSIM_WEBHOOK_SECRETS"] = "whsec_old_0123456789abc, " + secret
	vars["PSPSIM_WEBHOOK_URL"] = receiver.URL
	vars["PSPSIM_SEED"] = "42"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"pspsim", "--addr", "127.0.0.1:0", "--decline-rate", "0"}, func(k string) string { return vars[k] }, &out, &errb)
	}()
	addrRE := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
	var base string
	testenv.Eventually(t, 30*time.Second, "pspsim to listen", func() (bool, error) {
		select {
		case code := <-done:
			t.Fatalf("pspsim exited early with %d: %s", code, errb.String())
		default:
		}
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			return true, nil
		}
		return false, nil
	})
	c, err := psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: base, APIKey: "sk_test_cmd"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.CreatePayment(ctx, psp.CreatePaymentRequest{IdempotencyKey: "k1", AmountMinor: 100, Currency: "EUR",
		MerchantReference: "cmd-1", Confirm: true, PaymentMethod: psp.MethodCardSucceeds})
	if err != nil || p.Status != psp.StatusSucceeded {
		t.Fatalf("create: %+v, %v", p, err)
	}
	h, err := c.CreatePayment(ctx, psp.CreatePaymentRequest{IdempotencyKey: "k2", AmountMinor: 100, Currency: "EUR",
		MerchantReference: "cmd-2", ReturnURL: "https://shop.example/r"})
	if err != nil || !strings.HasPrefix(h.RedirectURL, base+"/pay/") {
		t.Fatalf("hosted: %+v, %v", h, err)
	}
	testenv.Eventually(t, 10*time.Second, "two webhooks", func() (bool, error) { return hooks.Load() == 2, nil })
	req, _ := http.NewRequest(http.MethodGet, base+"/admin/faults", nil)
	req.Header.Set("Authorization", "Bearer sk_admin_cmd")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var faults map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&faults)
	resp.Body.Close()
	if faults["seed"] != 42.0 || faults["hang_for"] != "15s" {
		t.Fatalf("faults %v", faults)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pspsim did not stop")
	}
	if !strings.Contains(errb.String(), `"msg":"pspsim stopped"`) || strings.Contains(errb.String(), secret) {
		t.Errorf("logs:\n%s", errb.String())
	}

	// Usage errors: no key, bad rate, bad env value.
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"pspsim"}, map[string]string{"PSPSIM_WEBHOOK_SECRETS": secret}, "API key is required"},
		{[]string{"pspsim", "--api-key", "k"}, nil, "webhook secret is required"},
		{[]string{"pspsim", "--api-key", "k", "--webhook-secrets", secret, "--decline-rate", "2", "--addr", "127.0.0.1:0"}, map[string]string{"DATABASE_URL": vars["DATABASE_URL"]}, "decline_rate"},
		{[]string{"pspsim", "--api-key", "k", "--webhook-secrets", secret}, map[string]string{"PSPSIM_HOSTED_TTL": "soon"}, "PSPSIM_HOSTED_TTL"},
	} {
		var o, e bytes.Buffer
		code := run(context.Background(), append([]string{}, append(c.args, "--addr", "127.0.0.1:0")...), func(k string) string { return c.env[k] }, &o, &e)
		if code != exitUsage || !strings.Contains(e.String(), c.want) {
			t.Errorf("%v %v: exit %d, %s", c.args, c.env, code, e.String())
		}
	}
}
