package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paypipe/paypipe/services/pspsim"
)

// scraper keeps, per child and incarnation, the last values of the counters
// the summary needs: paypipe's Prometheus counters live in process memory
// and a kill resets them, and so do the simulator's injected-fault counts.
// It scrapes every second, and the nemesis scrapes a process right before it
// kills it, so what is lost is at most the increments of the few
// milliseconds between that scrape and the kill: the totals are lower
// bounds, never estimates.
type scraper struct {
	c  *cluster
	mu sync.Mutex
	// series[proc][incarnation] maps a series ("name{labels}") to its value.
	series map[string]map[int]map[string]float64
	psp    map[int]pspsim.Injected
}

func newScraper(c *cluster) *scraper {
	return &scraper{c: c, series: map[string]map[int]map[string]float64{}, psp: map[int]pspsim.Injected{}}
}

func (s *scraper) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.all(ctx)
	}
}

// all scrapes every child once; errors (a child that is down) are ignored:
// its last good scrape stands.
func (s *scraper) all(ctx context.Context) {
	_ = s.metrics(ctx, s.c.a, s.c.apiURL)
	_ = s.metrics(ctx, s.c.b, s.c.bURL)
	_ = s.faults(ctx)
}

// metrics scrapes one paypipe process's /metrics.
func (s *scraper) metrics(ctx context.Context, p *proc, base string) error {
	inc := p.current()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return err
	}
	res, err := s.c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s /metrics: %d", p.name, res.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return err
	}
	vals := parseCounters(b, "paypipe_consumer_messages_total", "paypipe_outbox_relay_rows_total")
	// The answer belongs to the incarnation that was up before and after.
	if p.current() != inc {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.series[p.name] == nil {
		s.series[p.name] = map[int]map[string]float64{}
	}
	s.series[p.name][inc] = vals
	return nil
}

func (s *scraper) faults(ctx context.Context) error {
	inc := s.c.psp.current()
	v, err := s.c.faultsView(ctx)
	if err != nil || s.c.psp.current() != inc {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.psp[inc] = v.Injected
	return nil
}

// parseCounters reads the named metrics from Prometheus text format into
// "name{labels}" → value. Only counters without exemplars are expected.
func parseCounters(b []byte, names ...string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		for _, n := range names {
			if !strings.HasPrefix(line, n+"{") && !strings.HasPrefix(line, n+" ") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err == nil {
				out[line[:i]] = v
			}
		}
	}
	return out
}

// sum adds, over every process and incarnation, the series of metric whose
// labels include every label="value" given.
func (s *scraper) sum(metric string, labels ...string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var total float64
	for _, incs := range s.series {
		for _, vals := range incs {
			for k, v := range vals {
				if matchSeries(k, metric, labels) {
					total += v
				}
			}
		}
	}
	return int64(total)
}

// by is sum grouped by one label's value.
func (s *scraper) by(metric, label string, labels ...string) map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for _, incs := range s.series {
		for _, vals := range incs {
			for k, v := range vals {
				if matchSeries(k, metric, labels) {
					out[labelValue(k, label)] += int64(v)
				}
			}
		}
	}
	return out
}

func matchSeries(series, metric string, labels []string) bool {
	if !strings.HasPrefix(series, metric+"{") {
		return false
	}
	for _, l := range labels {
		if !strings.Contains(series, l) {
			return false
		}
	}
	return true
}

func labelValue(series, label string) string {
	_, rest, ok := strings.Cut(series, label+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// injected sums the simulator's injected-fault counts over its incarnations.
func (s *scraper) injected() pspsim.Injected {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t pspsim.Injected
	for _, v := range s.psp {
		t.Declines += v.Declines
		t.FailBeforeCharge += v.FailBeforeCharge
		t.FailAfterCharge += v.FailAfterCharge
		t.HangAfterCharge += v.HangAfterCharge
		t.DuplicateWebhooks += v.DuplicateWebhooks
		t.ReorderedBatches += v.ReorderedBatches
		t.DroppedWebhooks += v.DroppedWebhooks
		t.FailBeforeRefund += v.FailBeforeRefund
		t.FailAfterRefund += v.FailAfterRefund
		t.HangAfterRefund += v.HangAfterRefund
		t.FailBeforePayout += v.FailBeforePayout
		t.FailAfterPayout += v.FailAfterPayout
		t.HangAfterPayout += v.HangAfterPayout
		t.FailedPayouts += v.FailedPayouts
	}
	return t
}
