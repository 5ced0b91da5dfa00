// Command relaybench compares paypipe's outbox relay with watermill-sql's
// forwarder, in one process, on the same PostgreSQL server and an embedded
// nats-server:
//
//	go run ./bench/relaybench -out bench/results/relay.json
//
// It creates a fresh database on the server DATABASE_URL names (dropped at
// the end) and, per JetStream sync setting, one embedded nats-server. Every
// scenario gets its own tables and its own stream. Scenarios, for each relay:
//
//   - drain: N pending rows are written first (8 writers, one event per
//     transaction); then the relay starts; events/s until all are in the stream.
//   - paced: 8 writers at a total fixed rate, one transaction per event;
//     commit→stream latency (commit time taken by the writer right after
//     COMMIT, arrival time by a JetStream consumer on the stream).
//   - saturation: 8 unthrottled writers for a fixed time without a relay
//     (writers-only rate), then again with the relay running (end-to-end rate:
//     events in the stream per second, tail drain included).
//
// With -experiments (the default) it also runs variants of paypipe's relay
// (BatchSize 1000, two relays, PollInterval 10ms, a Run loop that polls again
// after any non-empty pass), reported apart from the main figures.
//
// Each run checks that every written event is in the stream exactly once and
// fails loudly otherwise. The last line printed is the summary:
//
//	relay_eps=… peer_eps=… ratio=… relay_p99_ms=… writers_eps=…
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg := DefaultConfig()
	out := flag.String("out", "bench/results/relay.json", "write the results as JSON here (\"\" to skip)")
	scen := flag.String("scenarios", strings.Join(cfg.Scenarios, ","), "comma-separated scenarios: drain,paced,saturation")
	syncs := flag.String("syncs", strings.Join(cfg.Syncs, ","), "comma-separated JetStream sync settings: default (2 min fsync interval), always (sync_interval: always)")
	relays := flag.String("relays", strings.Join(cfg.Relays, ","), "comma-separated relays: paypipe,forwarder")
	quick := flag.Bool("quick", false, "tiny sizes: a smoke test of the bench, not a measurement")
	reps := flag.Int("reps", cfg.Reps, "drain runs per relay (the median is reported)")
	wake := flag.Bool("wake", cfg.Wake, "also run paypipe's paced scenario with writers calling Relay.Wake after commit")
	storeDir := flag.String("store-dir", "", "parent directory of the JetStream file stores (default: the system temp dir)")
	fwdPoll := flag.Duration("forwarder-poll", cfg.ForwarderPoll, "watermill-sql subscriber PollInterval (its default is 1s; paypipe's relay polls every 20ms)")
	exps := flag.Bool("experiments", true, "also run variants of paypipe's relay (batch 1000, 2 relays; poll 10ms, eager loop, timed passes) in drain and paced")
	ppBatch := flag.Int("paypipe-batch", 0, "experiment: paypipe RelayConfig.BatchSize (0: default 500)")
	ppRelays := flag.Int("paypipe-relays", 1, "experiment: paypipe relays running on the same store")
	ppPoll := flag.Duration("paypipe-poll", 0, "experiment: paypipe RelayConfig.PollInterval (0: default 20ms)")
	ppLoop := flag.String("paypipe-loop", "run", "experiment: run = Relay.Run; copy = RunOnce in Run's policy, pass times recorded; eager = RunOnce again at once after any non-empty pass")
	flag.Parse()

	if *quick {
		cfg = cfg.QuickSizes()
	}
	cfg.Scenarios = splitList(*scen)
	cfg.Syncs = splitList(*syncs)
	cfg.Relays = splitList(*relays)
	if !*quick || flagSet("reps") {
		cfg.Reps = *reps
	}
	cfg.Wake = *wake
	cfg.Experiments = *exps
	if *quick && !flagSet("experiments") {
		cfg.Experiments = false
	}
	cfg.StoreDir = *storeDir
	cfg.ForwarderPoll = *fwdPoll
	cfg.PaypipeBatch, cfg.PaypipeInstances, cfg.PaypipePoll, cfg.PaypipeLoop = *ppBatch, *ppRelays, *ppPoll, *ppLoop
	cfg.DatabaseURL = os.Getenv("DATABASE_URL")
	cfg.Log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep, err := Run(ctx, cfg)
	if rep != nil {
		if *out != "" {
			if werr := writeJSON(*out, rep); werr != nil {
				fmt.Fprintln(os.Stderr, "relaybench:", werr)
				if err == nil {
					err = werr
				}
			} else {
				fmt.Fprintln(os.Stderr, "relaybench: wrote", *out)
			}
		}
		PrintTable(os.Stdout, rep)
		fmt.Println(rep.Summary.Line)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaybench: FAIL:", err)
		os.Exit(1)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
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

// since is a monotonic offset from base in nanoseconds; writers and the
// stream watcher share one base, so their difference is a latency.
func since(base time.Time) int64 { return int64(time.Since(base)) }
