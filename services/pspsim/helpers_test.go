package pspsim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/pspsim"
)

const (
	secretOld = "whsec_old_0123456789abcdef"
	secretNew = "whsec_new_0123456789abcdef"
)

// sim is one simulator on its own database, served over real HTTP, with a
// webhook receiver and a psp.HTTPClient pointed at it.
type sim struct {
	t        *testing.T
	srv      *pspsim.Server
	pool     *pgxpool.Pool
	url      string
	apiKey   string
	adminKey string
	client   *psp.HTTPClient
	hooks    *receiver
	logs     *lockedBuffer
	runOnce  sync.Once
	stopRun  func()
}

type simOptions struct {
	cfg       func(*pspsim.Config)
	noRun     bool          // start the background loops later, with run()
	failFirst int           // the receiver answers 500 to its first N requests
	pool      *pgxpool.Pool // share a database with another sim
}

func newSim(t *testing.T, o simOptions) *sim {
	t.Helper()
	pool := o.pool
	if pool == nil {
		pool, _ = testenv.Migrated(t, pspsim.Schema())
	}
	hooks := newReceiver(t, o.failFirst)
	var h http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	s := &sim{t: t, pool: pool, url: ts.URL, hooks: hooks, logs: &lockedBuffer{},
		apiKey: "sk_test_" + uuid.NewString(), adminKey: "sk_admin_" + uuid.NewString()}
	cfg := pspsim.Config{
		APIKey:             s.apiKey,
		AdminKey:           s.adminKey,
		PublicURL:          ts.URL,
		WebhookURL:         hooks.url,
		WebhookSecrets:     []string{secretOld, secretNew},
		WebhookBackoff:     retry.Policy{Strategy: retry.Exponential, Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Jitter: 0.1},
		WebhookTimeout:     2 * time.Second,
		PollInterval:       10 * time.Millisecond,
		ExpiryInterval:     10 * time.Millisecond,
		DelayedWebhook:     time.Hour,
		WebhookConcurrency: 4,
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	log := slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := pspsim.New(cfg, pool, log)
	if err != nil {
		t.Fatal(err)
	}
	s.srv, h = srv, srv.Handler()
	s.client, err = psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: ts.URL, APIKey: s.apiKey})
	if err != nil {
		t.Fatal(err)
	}
	if !o.noRun {
		s.run()
	}
	return s
}

// run starts the webhook sender and the expiry loop; they stop when the
// test ends.
func (s *sim) run() {
	s.runOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := s.srv.Run(ctx); err != nil {
				s.t.Errorf("Run: %v", err)
			}
		}()
		s.stopRun = func() { cancel(); <-done }
		s.t.Cleanup(s.stopRun)
	})
}

// raw sends a request with the API key (or auth, when not empty) and
// returns the status, headers and body.
func (s *sim) raw(method, path, auth string, hdr map[string]string, body string) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if auth == "" {
		auth = s.apiKey
	}
	if auth != "-" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// admin calls an admin endpoint and decodes a 200 answer into out.
func (s *sim) admin(method, path string, in, out any) {
	s.t.Helper()
	var body string
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			s.t.Fatal(err)
		}
		body = string(b)
	}
	st, _, b := s.raw(method, path, s.adminKey, nil, body)
	if st != http.StatusOK {
		s.t.Fatalf("%s %s: %d %s", method, path, st, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

func (s *sim) setFaults(f pspsim.Faults) {
	s.t.Helper()
	s.admin(http.MethodPost, "/admin/faults", f, nil)
}

func (s *sim) charges(ref string) []pspsim.Charge {
	s.t.Helper()
	var page pspsim.ChargesPage
	s.admin(http.MethodGet, "/admin/charges?merchant_reference="+url.QueryEscape(ref), nil, &page)
	return page.Charges
}

func (s *sim) webhookEvents(query string) []pspsim.WebhookEvent {
	s.t.Helper()
	var page pspsim.WebhookEventsPage
	s.admin(http.MethodGet, "/admin/webhooks?limit=1000&"+query, nil, &page)
	return page.Events
}

// count runs a count(*) query.
func (s *sim) count(sql string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// awaitWebhooksSettled waits until no event is pending.
func (s *sim) awaitWebhooksSettled() {
	s.t.Helper()
	testenv.Eventually(s.t, 15*time.Second, "every webhook delivered, dropped or dead", func() (bool, error) {
		return s.count(`SELECT count(*) FROM pspsim.webhook_events WHERE state = 'pending'`) == 0, nil
	})
}

func hosted(ref string, amount int64, currency string) psp.CreatePaymentRequest {
	return psp.CreatePaymentRequest{IdempotencyKey: "key-" + ref, AmountMinor: amount, Currency: currency,
		MerchantReference: ref, Description: "Order " + ref, ReturnURL: "https://shop.example/return?cart=7"}
}

func direct(ref, method string) psp.CreatePaymentRequest {
	return psp.CreatePaymentRequest{IdempotencyKey: "key-" + ref, AmountMinor: 2599, Currency: "EUR",
		MerchantReference: ref, Confirm: true, PaymentMethod: method}
}

func pspError(t *testing.T, err error) *psp.Error {
	t.Helper()
	var pe *psp.Error
	if !errors.As(err, &pe) {
		t.Fatalf("want a *psp.Error, got %v", err)
	}
	return pe
}

// receiver is a merchant's webhook endpoint: it verifies every delivery
// with psp.VerifySignature and records it.
type receiver struct {
	t         *testing.T
	url       string
	mu        sync.Mutex
	failFirst int
	requests  int
	got       []delivery
	payouts   []psp.PayoutEvent // accepted payout webhooks, in arrival order
}

type delivery struct {
	ev psp.Event
	at time.Time
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	rc := &receiver{t: t, failFirst: failFirst}
	ts := httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(ts.Close)
	rc.url = ts.URL + "/v1/psp/webhooks"
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	sig := r.Header.Get(psp.SignatureHeader)
	// Both secrets sign every delivery (a rotation): each alone must verify.
	for _, secret := range []string{secretOld, secretNew} {
		if err := psp.VerifySignature(sig, body, []string{secret}, time.Now(), psp.DefaultTolerance); err != nil {
			rc.t.Errorf("webhook signature with one secret: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
	}
	if psp.VerifySignature(sig, body, []string{"whsec_someone_else_entirely"}, time.Now(), psp.DefaultTolerance) == nil {
		rc.t.Error("webhook verifies under a foreign secret")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if r.URL.Path == "/v1/psp/payout_webhooks" {
		var pe psp.PayoutEvent
		if err := dec.Decode(&pe); err != nil || pe.ID == "" {
			rc.t.Errorf("payout webhook body %s: %v", body, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.payouts = append(rc.payouts, pe)
		rc.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.URL.Path != "/v1/psp/webhooks" {
		rc.t.Errorf("webhook to unexpected path %s", r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	var ev psp.Event
	if err := dec.Decode(&ev); err != nil || ev.ID == "" {
		rc.t.Errorf("webhook body %s: %v", body, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.requests++
	fail := rc.requests <= rc.failFirst
	if !fail {
		rc.got = append(rc.got, delivery{ev: ev, at: time.Now()})
	}
	rc.mu.Unlock()
	if fail {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// deliveries returns the accepted deliveries so far, in arrival order.
func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// payoutEvents returns the accepted payout webhooks so far.
func (rc *receiver) payoutEvents() []psp.PayoutEvent {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]psp.PayoutEvent(nil), rc.payouts...)
}

func (rc *receiver) totalRequests() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.requests
}

// forPayment returns the accepted deliveries of one payment.
func (rc *receiver) forPayment(id string) []delivery {
	var out []delivery
	for _, d := range rc.deliveries() {
		if d.ev.Data.ID == id {
			out = append(out, d)
		}
	}
	return out
}

// lockedBuffer collects log lines written concurrently.
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
