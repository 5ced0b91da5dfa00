package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/services/payment"
)

// Outcomes of a client operation, in Jepsen's words: ok (the server
// answered 2xx), fail (a definite refusal: 4xx), info (no definite answer
// before the operation's deadline: it may or may not have happened).
const (
	outcomeOK   = "ok"
	outcomeFail = "fail"
	outcomeInfo = "info"
)

// op is one client operation of the workload: a checkout created with an
// Idempotency-Key and retried with the same key and the same bytes until a
// definite answer or its deadline; hosted checkouts are then paid through
// the simulator's card form, like a browser.
type op struct {
	N       int
	Kind    string // checkout or same_key (F18)
	Key     string
	Body    []byte
	Mode    string
	Card    string // hosted: the card typed into the form
	BuyerID string

	Outcome    string
	CheckoutID string
	Status     int    // HTTP status of the definite answer
	Response   []byte // body of the first 2xx, for the replay probe
	Attempts   int
	Err        string
	Paid       bool // hosted: the form was submitted and answered
	// Resolved marks an info op answered after healing.
	Resolved bool
}

// apiClient calls paypipe's API as the chaos merchant, and the simulator's
// hosted pages as a buyer.
type apiClient struct {
	base string
	key  string
	http *http.Client
}

type response struct {
	status int
	body   []byte
	header http.Header
}

func (c *apiClient) do(ctx context.Context, method, path, idemKey string, body []byte) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, body: b, header: res.Header}, nil
}

// retryable reports whether an answer leaves the outcome open: the server
// may not have seen the request, may be down, or is still working on the
// key (429). 4xx other than 429 are definite.
func retryable(r response, err error) bool {
	return err != nil || r.status == http.StatusTooManyRequests || r.status >= 500
}

// clientStats counts what clients saw, for the summary.
type clientStats struct {
	requests, connErrors, http5xx, http429, replayed atomic.Int64
}

func (s *clientStats) note(r response, err error) {
	s.requests.Add(1)
	switch {
	case err != nil:
		s.connErrors.Add(1)
	case r.status == http.StatusTooManyRequests:
		s.http429.Add(1)
	case r.status >= 500:
		s.http5xx.Add(1)
	}
	if err == nil && r.header.Get("Idempotent-Replayed") == "true" {
		s.replayed.Add(1)
	}
}

// workload runs the client side of a chaos run.
type workload struct {
	cfg     Config
	log     *slog.Logger
	api     *apiClient
	sellers []string
	stats   clientStats
	ops     []*op
	started atomic.Int64 // ops started, the nemesis's clock
	hist    *history
	// sales records what the merchant did with paid orders (sales.go).
	sales sales
}

// history appends every client event as a JSON line (invoke, ok, fail,
// info): the run's record, kept in the run directory.
type history struct {
	mu sync.Mutex
	w  *bufio.Writer
	f  *os.File
}

func newHistory(path string) (*history, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &history{f: f, w: bufio.NewWriter(f)}, nil
}

func (h *history) add(o *op, event string, extra map[string]any) {
	rec := map[string]any{"t": time.Now().UTC().Format(time.RFC3339Nano), "op": o.N, "kind": o.Kind, "event": event, "key": o.Key}
	if o.CheckoutID != "" {
		rec["checkout"] = o.CheckoutID
	}
	for k, v := range extra {
		rec[k] = v
	}
	b, _ := json.Marshal(rec)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.w.Write(append(b, '\n'))
}

func (h *history) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.w.Flush(); err != nil {
		h.f.Close()
		return err
	}
	return h.f.Close()
}

// rngReader adapts a seeded generator to io.Reader for uuid.
type rngReader struct{ r *rand.Rand }

func (r rngReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.r.Uint32())
	}
	return len(p), nil
}

func seededUUID(r *rand.Rand) string {
	u, err := uuid.NewRandomFromReader(rngReader{r})
	if err != nil {
		panic(err) // rngReader never fails
	}
	return u.String()
}

var currencies = []string{"USD", "EUR", "GBP", "JPY", "KWD", "CLP"}

// plan builds op n's request from the seed alone, so the same seed gives the
// same workload whatever the timing.
func (w *workload) plan(n int) *op {
	r := rand.New(rand.NewPCG(w.cfg.Seed, uint64(n)+1))
	o := &op{N: n, Kind: "checkout", Key: seededUUID(r), BuyerID: fmt.Sprintf("chaos-buyer-%d", n)}
	req := map[string]any{"buyer_id": o.BuyerID, "currency": currencies[r.IntN(len(currencies))]}
	nOrders := 1 + r.IntN(3)
	perm := r.Perm(len(w.sellers))
	orders := make([]map[string]any, nOrders)
	for i := range orders {
		orders[i] = map[string]any{"seller_id": w.sellers[perm[i]], "amount_minor": 50 + r.Int64N(200_000)}
	}
	req["orders"] = orders
	if r.Float64() < w.cfg.HostedShare {
		o.Mode = "hosted"
		req["mode"], req["return_url"] = "hosted", "http://127.0.0.1/chaos/return"
		switch x := r.Float64(); {
		case x < 0.85:
			o.Card = "4242 4242 4242 4242"
		case x < 0.95:
			o.Card = "4000 0000 0000 0002" // declined
		default:
			o.Card = "4000 0000 0000 0077" // succeeds, webhook delayed
		}
	} else {
		o.Mode = "direct"
		req["mode"] = "direct"
		switch x := r.Float64(); {
		case x < 0.86:
			req["payment_method"] = "pm_card_visa"
		case x < 0.92:
			req["payment_method"] = "pm_card_declined"
		case x < 0.98:
			req["payment_method"] = "pm_card_insufficient_funds"
		default:
			req["payment_method"] = "pm_card_delayed_webhook"
		}
	}
	o.Body, _ = json.Marshal(req) // maps marshal with sorted keys: fixed bytes
	return o
}

// run starts cfg.Checkouts operations at cfg.Rate per second, at most
// cfg.Concurrency at once, and returns when all have ended.
func (w *workload) run(ctx context.Context) {
	sem := make(chan struct{}, w.cfg.Concurrency)
	// Sales wait for their checkout to complete: they get slots of their
	// own, so that waiting never slows the checkouts' pace.
	saleSem := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / w.cfg.Rate))
	defer tick.Stop()
	w.ops = make([]*op, w.cfg.Checkouts)
	for n := range w.cfg.Checkouts {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
		}
		o := w.plan(n)
		w.ops[n] = o
		w.started.Add(1)
		if ctx.Err() != nil {
			o.Outcome, o.Err = outcomeInfo, "not started: run cancelled"
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			w.checkout(ctx, o, w.cfg.OpTimeout)
			if o.Outcome == outcomeOK && o.Mode == "hosted" {
				// A buyer waits for the payment page longer than for an API
				// answer: registration can wait out a killed executor's
				// lease (1 min).
				w.payHosted(ctx, o, 2*w.cfg.OpTimeout)
			}
			if o.Outcome == outcomeOK && w.cfg.SaleShare > 0 {
				wg.Go(func() {
					saleSem <- struct{}{}
					defer func() { <-saleSem }()
					w.sell(ctx, o)
				})
			}
		})
		if (n+1)%max(1, w.cfg.Checkouts/10) == 0 {
			w.log.Info("workload", "started", n+1, "of", w.cfg.Checkouts)
		}
	}
	wg.Wait()
}

// checkout creates o's checkout, retrying with the same key and bytes on
// connection errors, 429 and 5xx until budget runs out.
func (w *workload) checkout(ctx context.Context, o *op, budget time.Duration) {
	deadline := time.Now().Add(budget)
	r := rand.New(rand.NewPCG(w.cfg.Seed, uint64(o.N)+1<<40))
	w.hist.add(o, "invoke", map[string]any{"mode": o.Mode})
	for attempt := 1; ; attempt++ {
		o.Attempts++
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		res, err := w.api.do(rctx, http.MethodPost, "/v1/checkouts", o.Key, o.Body)
		cancel()
		w.stats.note(res, err)
		if !retryable(res, err) {
			o.Status = res.status
			extra := map[string]any{"http": res.status, "attempts": o.Attempts}
			if o.Err != "" {
				extra["last_retry_err"] = o.Err
			}
			if res.status/100 == 2 {
				var co payment.Checkout
				if jerr := json.Unmarshal(res.body, &co); jerr != nil || co.ID == uuid.Nil {
					o.Outcome, o.Err = outcomeFail, fmt.Sprintf("2xx without a checkout: %v", jerr)
				} else {
					o.Outcome, o.CheckoutID, o.Response, o.Err = outcomeOK, co.ID.String(), res.body, ""
				}
			} else {
				o.Outcome, o.Err = outcomeFail, fmt.Sprintf("%d %s", res.status, truncate(res.body, 300))
			}
			if o.Err != "" {
				extra["err"] = o.Err
			}
			w.hist.add(o, o.Outcome, extra)
			return
		}
		if err != nil {
			o.Err = err.Error()
		} else {
			o.Err = fmt.Sprintf("%d %s", res.status, truncate(res.body, 200))
		}
		wait := backoff(r, attempt, res)
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			if o.Outcome == "" {
				o.Outcome = outcomeInfo
			}
			w.hist.add(o, outcomeInfo, map[string]any{"attempts": o.Attempts, "err": o.Err})
			return
		}
		sleepCtx(ctx, wait)
	}
}

// backoff is 50 ms doubling to 1 s with jitter, or the server's Retry-After
// (capped at 2 s).
func backoff(r *rand.Rand, attempt int, res response) time.Duration {
	if s := res.header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			return min(time.Duration(n)*time.Second, 2*time.Second)
		}
	}
	d := 50 * time.Millisecond << min(attempt-1, 5)
	d = min(d, time.Second)
	return d/2 + time.Duration(r.Int64N(int64(d/2)+1))
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func truncate(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// payHosted waits for the hosted page's URL and submits the card form, as
// a browser would; connection errors and 5xx are retried. 303 (paid or
// declined) and 409 (already paid by an earlier attempt whose answer was
// lost) both mean the form was taken.
func (w *workload) payHosted(ctx context.Context, o *op, budget time.Duration) {
	deadline := time.Now().Add(budget)
	r := rand.New(rand.NewPCG(w.cfg.Seed, uint64(o.N)+2<<40))
	var redirect string
	for attempt := 1; redirect == ""; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := w.api.do(rctx, http.MethodGet, "/v1/checkouts/"+o.CheckoutID, "", nil)
		cancel()
		if err == nil && res.status == http.StatusOK {
			var co payment.Checkout
			if json.Unmarshal(res.body, &co) == nil {
				if co.NextAction != nil && co.NextAction.RedirectURL != "" {
					redirect = co.NextAction.RedirectURL
					break
				}
				if payment.Terminal(co.Status) {
					// Rejected before it could be paid: nothing to pay.
					o.Paid = true
					w.hist.add(o, "pay", map[string]any{"result": "terminal before payment: " + co.Status})
					return
				}
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			w.hist.add(o, "pay", map[string]any{"result": "no redirect yet"})
			return
		}
		sleepCtx(ctx, min(100*time.Millisecond*time.Duration(attempt), time.Second))
	}
	noFollow := &http.Client{Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"cardnumber": {o.Card}, "exp": {"12/39"}, "cvc": {"123"}, "name": {"Chaos Buyer"}}.Encode()
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		req, err := http.NewRequestWithContext(rctx, http.MethodPost, redirect, strings.NewReader(form))
		if err != nil {
			cancel()
			o.Err = err.Error()
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := noFollow.Do(req)
		status := 0
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
			res.Body.Close()
			status = res.StatusCode
		}
		cancel()
		if status == http.StatusSeeOther || status == http.StatusConflict {
			o.Paid = true
			w.hist.add(o, "pay", map[string]any{"http": status})
			return
		}
		if err == nil && status < 500 {
			o.Err = fmt.Sprintf("card form: %d", status)
			w.hist.add(o, "pay", map[string]any{"http": status, "err": o.Err})
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			w.hist.add(o, "pay", map[string]any{"result": "unanswered", "http": status})
			return
		}
		sleepCtx(ctx, backoff(r, attempt, response{header: http.Header{}}))
	}
}

// resolve answers, after healing, every operation left indeterminate (same
// key, same bytes) and pays every hosted checkout still unpaid (I11).
func (w *workload) resolve(ctx context.Context, budget time.Duration, extra []*op) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, w.cfg.Concurrency)
	for _, o := range append(append([]*op{}, w.ops...), extra...) {
		if o == nil || (o.Outcome != outcomeInfo && (o.Mode != "hosted" || o.Outcome != outcomeOK || o.Paid)) {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if o.Outcome == outcomeInfo {
				w.checkout(ctx, o, budget)
				if o.Outcome == outcomeInfo {
					return
				}
				o.Resolved = true
			}
			if o.Outcome == outcomeOK && o.Mode == "hosted" && !o.Paid {
				w.payHosted(ctx, o, budget)
			}
		})
	}
	wg.Wait()
}

// replayProbe re-sends a deterministic sample of finished requests with
// their key: each must answer the stored response byte for byte (I7). It
// returns the number probed and the mismatches.
func (w *workload) replayProbe(ctx context.Context) (int, []string) {
	probed := 0
	var bad []string
	for _, o := range w.ops {
		if o == nil || o.Outcome != outcomeOK || o.N%25 != 0 {
			continue
		}
		probed++
		var res response
		var err error
		for attempt := 1; attempt <= 20; attempt++ {
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			res, err = w.api.do(rctx, http.MethodPost, "/v1/checkouts", o.Key, o.Body)
			cancel()
			if !retryable(res, err) {
				break
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("op %d: replay unanswered: %v", o.N, err))
		case res.status != o.Status || !bytes.Equal(res.body, o.Response):
			bad = append(bad, fmt.Sprintf("op %d: replay answered %d %s, first answer %d %s", o.N, res.status,
				truncate(res.body, 120), o.Status, truncate(o.Response, 120)))
		case res.header.Get("Idempotent-Replayed") != "true":
			bad = append(bad, fmt.Sprintf("op %d: replay without Idempotent-Replayed: true", o.N))
		}
	}
	return probed, bad
}

// setup creates the chaos merchant (through the CLI, as an operator would)
// and its sellers (through the API).
func (w *workload) setup(ctx context.Context, c *cluster, sellers int) error {
	out, err := c.paypipeCmd(ctx, time.Minute, false, "merchants", "create", "--name", "chaos", "--fee-bps", "300", "-o", "json")
	if err != nil {
		return err
	}
	var m struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(out, &m); err != nil || m.APIKey == "" {
		return fmt.Errorf("merchants create: no api_key in %q: %v", out, err)
	}
	w.api.key = m.APIKey
	r := rand.New(rand.NewPCG(w.cfg.Seed, 1<<50))
	for i := range sellers {
		body, _ := json.Marshal(map[string]string{"name": fmt.Sprintf("chaos seller %d", i)})
		key := seededUUID(r)
		var res response
		err := awaitCond(ctx, 30*time.Second, func(ctx context.Context) error {
			var err error
			res, err = w.api.do(ctx, http.MethodPost, "/v1/sellers", key, body)
			if err == nil && res.status != http.StatusCreated {
				err = fmt.Errorf("POST /v1/sellers: %d %s", res.status, truncate(res.body, 200))
			}
			return err
		})
		if err != nil {
			return err
		}
		var s payment.Seller
		if err := json.Unmarshal(res.body, &s); err != nil {
			return err
		}
		w.sellers = append(w.sellers, s.ID.String())
	}
	return nil
}
