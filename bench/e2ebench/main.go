// Command e2ebench measures paypipe's pay-in path end to end, as it really
// runs: the built `paypipe serve` binary as a child process (embedded NATS
// with sync_interval always, embedded PSP simulator), on a fresh PostgreSQL
// database, driven over HTTP by concurrent API clients:
//
//	go run ./bench/e2ebench -out bench/results/e2e.json
//
// Every checkout is direct mode with pm_card_visa, so it travels the whole
// pipeline: API (checkout + outbox) → relay → executor → PSP simulator →
// signed webhook → payment (order succeeded) → ledger and wallet → payment
// (order and checkout COMPLETED). Scenarios, per relay mode
// (PAYPIPE_RELAY_MODE; the first mode also runs the others):
//
//   - saturation: 5,000 checkouts from 32 clients as fast as they are
//     accepted. e2e_pps = completed / (first request → last completion);
//     accept_pps = 201s / (first request → last 201).
//   - paced: an open loop offering 200 checkouts/s for 20 s (requests are
//     scheduled by the clock, not by responses); latency request start →
//     COMPLETED, p50/p99/max. Again at 50/s (-extra-rates), below
//     saturation, where the latency is the pipeline's, not a queue's.
//   - saturation-2-orders: saturation with two sellers' orders per checkout.
//
// Completion times are not polled: they are read after the run from
// payment.status_transitions (the checkout's transition to completed, `at` =
// now() of the completing transaction), on the same machine clock as the
// clients' request start times. The run waits (bounded) until every checkout
// is completed or failed and counts failures, API errors and unfinished ones.
//
// Costs per payment: xact_commit of the bench database in pg_stat_database
// (before/after, after a settle for PostgreSQL's delayed stats flush; the
// commits of the idle pipeline, measured before the run, and the bench's own
// queries are reported and subtracted), outbox rows written by every service,
// rows written per table, and CPU seconds of paypipe, PostgreSQL and the
// clients. A short probe measures how many small write transactions per
// second PostgreSQL commits on this machine, for the commit bound.
//
// The last line printed is the summary:
//
//	e2e_pps=… p50_ms=… p99_ms=… commits_per_payment=… events_per_payment=…
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	cfg := DefaultConfig()
	out := flag.String("out", "bench/results/e2e.json", "write the results as JSON here (\"\" to skip)")
	quick := flag.Bool("quick", false, "tiny sizes (100 checkouts, 8 clients, 3 s paced at 20/s): a smoke test, not a measurement")
	bin := flag.String("bin", "", "paypipe binary to run (default: go build ./cmd/paypipe into a temporary directory)")
	modes := flag.String("modes", strings.Join(cfg.Modes, ","), "comma-separated PAYPIPE_RELAY_MODE values; the first also runs paced and the two-order variant")
	checkouts := flag.Int("checkouts", cfg.Checkouts, "saturation: checkouts")
	clients := flag.Int("clients", cfg.Clients, "saturation: concurrent clients")
	rate := flag.Int("rate", cfg.PacedRate, "paced: offered checkouts per second (the latency target's rate)")
	extra := flag.String("extra-rates", joinInts(cfg.ExtraRates), "comma-separated further paced rates (first mode), e.g. below saturation; \"\" for none")
	pacedFor := flag.Duration("paced-for", cfg.PacedFor, "paced: how long to offer")
	twoOrders := flag.Bool("two-orders", cfg.TwoOrders, "also run saturation with two orders per checkout (first mode only)")
	perfOut := flag.String("perf", "", "record a CPU profile of the paypipe child with `perf record` during the first mode's saturation run into this directory (needs perf)")
	flag.Parse()

	if *quick {
		cfg = cfg.QuickSizes()
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !*quick || set["modes"] {
		cfg.Modes = splitList(*modes)
	}
	if !*quick || set["checkouts"] {
		cfg.Checkouts = *checkouts
	}
	if !*quick || set["clients"] {
		cfg.Clients = *clients
	}
	if !*quick || set["rate"] {
		cfg.PacedRate = *rate
	}
	if !*quick || set["extra-rates"] {
		rates, err := parseInts(*extra)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2ebench: -extra-rates:", err)
			os.Exit(2)
		}
		cfg.ExtraRates = rates
	}
	if !*quick || set["paced-for"] {
		cfg.PacedFor = *pacedFor
	}
	if !*quick || set["two-orders"] {
		cfg.TwoOrders = *twoOrders
	}
	cfg.Bin = *bin
	cfg.PerfDir = *perfOut
	cfg.DatabaseURL = os.Getenv("DATABASE_URL")
	cfg.Log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep, err := Run(ctx, cfg)
	if rep != nil {
		if *out != "" {
			if werr := writeJSON(*out, rep); werr != nil {
				fmt.Fprintln(os.Stderr, "e2ebench:", werr)
				if err == nil {
					err = werr
				}
			} else {
				fmt.Fprintln(os.Stderr, "e2ebench: wrote", *out)
			}
		}
		PrintTable(os.Stdout, rep)
		fmt.Println(rep.Summary.Line)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2ebench: FAIL:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
