package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/services/psp"
)

// maxAnswer bounds what the bench reads of any API answer.
const maxAnswer = 1 << 20

// apiClient calls paypipe's /v1 API as a merchant's server would.
type apiClient struct {
	base, key string
	client    *http.Client
}

// newAPIClient keeps up to conns idle connections to the API, so that
// concurrent clients reuse connections instead of opening one per request
// (http.Transport keeps 2 per host by default).
func newAPIClient(base, key string, timeout time.Duration, conns int) *apiClient {
	tr := &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 90 * time.Second,
		DisableCompression: true, ResponseHeaderTimeout: timeout,
	}
	return &apiClient{base: base, key: key, client: &http.Client{Transport: tr, Timeout: timeout}}
}

func (c *apiClient) close() { c.client.CloseIdleConnections() }

// post sends one POST with a fresh Idempotency-Key.
func (c *apiClient) post(ctx context.Context, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", uuid.NewString())
	res, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return res.StatusCode, nil, fmt.Errorf("read answer: %w", err)
	}
	return res.StatusCode, b, nil
}

// createSellers creates n sellers through the API and returns their ids.
func (c *apiClient) createSellers(ctx context.Context, n int) ([]string, error) {
	ids := make([]string, 0, n)
	for i := range n {
		body, _ := json.Marshal(map[string]string{"name": "bench seller " + strconv.Itoa(i)})
		status, b, err := c.post(ctx, "/v1/sellers", body)
		if err != nil {
			return nil, fmt.Errorf("POST /v1/sellers: %w", err)
		}
		var s struct {
			ID string `json:"id"`
		}
		if status != http.StatusCreated || json.Unmarshal(b, &s) != nil || s.ID == "" {
			return nil, fmt.Errorf("POST /v1/sellers: %d %s", status, bytes.TrimSpace(b))
		}
		ids = append(ids, s.ID)
	}
	return ids, nil
}

// reqResult is one POST /v1/checkouts.
type reqResult struct {
	start  time.Time     // wall clock and monotonic: compared with PostgreSQL's timestamps
	dur    time.Duration // until the answer was read
	status int           // 0: no answer
	id     string        // the checkout's id, on 201
	err    string        // transport error or the non-201 answer
}

// driveStats describes how a load was offered.
type driveStats struct {
	Clients    int
	OfferedPPS float64
	// MaxLag is the largest delay between a paced request's scheduled and
	// actual start (client-side slip: the open loop stays open only if
	// this is small).
	MaxLag time.Duration
	// Skipped counts requests not sent because the context ended.
	Skipped int
}

// checkoutBodies prepares n checkout requests (direct mode, pm_card_visa,
// USD), orders of distinct sellers round robin, so JSON encoding is not on
// the clients' hot path.
func (e *modeEnv) checkoutBodies(n, orders int) [][]byte {
	bodies := make([][]byte, n)
	for i := range bodies {
		seq := e.next
		e.next++
		ords := make([]map[string]any, orders)
		for j := range ords {
			ords[j] = map[string]any{
				"seller_id":    e.sellers[(seq*orders+j)%len(e.sellers)],
				"amount_minor": 1000 + int64(seq%9000)*7 + int64(j)*100,
			}
		}
		bodies[i], _ = json.Marshal(map[string]any{
			"buyer_id": "bench-buyer-" + strconv.Itoa(seq), "currency": "USD", "mode": contracts.ModeDirect,
			"payment_method": psp.MethodCardSucceeds, "orders": ords,
		})
	}
	return bodies
}

// checkout posts one checkout.
func (e *modeEnv) checkout(ctx context.Context, body []byte) reqResult {
	r := reqResult{start: time.Now()}
	status, b, err := e.api.post(ctx, "/v1/checkouts", body)
	r.dur, r.status = time.Since(r.start), status
	switch {
	case err != nil:
		r.err = err.Error()
	case status != http.StatusCreated:
		r.err = fmt.Sprintf("%d %s", status, truncate(string(bytes.TrimSpace(b)), 300))
	default:
		var co struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &co); err != nil || co.ID == "" {
			r.err = "201 without a checkout id: " + truncate(string(b), 300)
		} else {
			r.id = co.ID
		}
	}
	return r
}

// saturate posts n checkouts from clients concurrent clients, each sending
// its next request as soon as it has the answer to the last one.
func (e *modeEnv) saturate(ctx context.Context, n, clients, orders int) ([]reqResult, driveStats) {
	bodies := e.checkoutBodies(n, orders)
	results := make([]reqResult, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				results[i] = e.checkout(ctx, bodies[i])
			}
		})
	}
	wg.Wait()
	ds := driveStats{Clients: clients}
	results, ds.Skipped = sent(results)
	return results, ds
}

// pace offers rate checkouts per second for d, open loop: request i is sent
// at start + i/rate whatever happened to the earlier ones, from its own
// goroutine, with at most MaxInFlight outstanding.
func (e *modeEnv) pace(ctx context.Context, rate int, d time.Duration, orders int) ([]reqResult, driveStats) {
	n := int(d.Seconds() * float64(rate))
	bodies := e.checkoutBodies(n, orders)
	results := make([]reqResult, n)
	ds := driveStats{OfferedPPS: float64(rate)}
	sem := make(chan struct{}, e.cfg.MaxInFlight)
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now()
loop:
	for i := range n {
		due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break loop
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		ds.MaxLag = max(ds.MaxLag, time.Since(due))
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = e.checkout(ctx, bodies[i])
		})
	}
	wg.Wait()
	results, ds.Skipped = sent(results)
	return results, ds
}

// sent drops the requests never sent (the context ended first).
func sent(rs []reqResult) ([]reqResult, int) {
	out := rs[:0]
	for _, r := range rs {
		if !r.start.IsZero() {
			out = append(out, r)
		}
	}
	return out, len(rs) - len(out)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
