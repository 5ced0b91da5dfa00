package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Scenario names (RELIABILITY.md §6.3). Each is one nemesis episode kind.
const (
	scNATSKill     = "F12"  // nats-server kill -9, restart on the same store
	scConsumerKill = "F14"  // process B (ledger, wallet consumers) kill -9 mid-load
	scRelayKill    = "F9"   // process A (API, executor, their relays) kill -9 mid-load
	scPSPAfter     = "F3F4" // PSP charges, then hangs past the client timeout or answers 500
	scWebhooks     = "F6F8" // duplicate, out-of-order and dropped webhooks
	scSameKey      = "F18"  // 50 concurrent requests with one idempotency key
	scPGRestart    = "F13"  // PostgreSQL immediate stop, restart after 5–8 s
	scDupWindow    = "F11"  // relay republishes after a 1 s duplicate window
	scSlowHandler  = "F16"  // process B frozen (SIGSTOP) for longer than AckWait
	scPoison       = "F15"  // malformed event → DLQ → replay
	scPayoutRace   = "F19"  // a payout run racing full refunds on one seller's orders
	scPSPPayout    = "F20"  // PSP refunds and payouts answer 500 or hang after committing; some payouts fail
	scReconCrash   = "F21"  // `paypipe recon run` SIGKILLed mid-run, then run to completion (checks phase)
)

// allScenarios in the order the brief ranks them.
var allScenarios = []string{scNATSKill, scConsumerKill, scRelayKill, scPSPAfter, scWebhooks, scSameKey,
	scPGRestart, scDupWindow, scSlowHandler, scPoison, scPayoutRace, scPSPPayout, scReconCrash}

// Config is one chaos run.
type Config struct {
	// Tier names the preset the run started from (small, soak).
	Tier string
	// Seed drives every random choice of the harness (workload, nemesis
	// schedule, durations) and the simulator's fault draws.
	Seed uint64
	// Checkouts is how many workload checkouts to create (F18's are extra).
	Checkouts int
	// Rate paces checkout starts per second, so that faults land on a
	// pipeline under steady load rather than on a burst.
	Rate float64
	// Concurrency bounds client operations in flight.
	Concurrency int
	// HostedShare is the share of hosted checkouts, paid by POSTing the
	// simulator's card form.
	HostedShare float64
	// SaleShare is the share of completed checkouts whose orders the
	// merchant then fulfils and refunds (planned per order from the seed).
	SaleShare float64
	// PayoutEvery is the interval of the workload's payout runs (each with
	// a period of its own, some as two racing processes).
	PayoutEvery time.Duration
	// Scenarios to run; Rounds times each (soak repeats them throughout).
	Scenarios []string
	Rounds    int
	// OpTimeout bounds one client operation's retries during the workload;
	// an operation still unanswered then is indeterminate and is resolved
	// after healing with the same idempotency key.
	OpTimeout time.Duration
	// QuiesceTimeout bounds the wait for a quiet, consistent pipeline after
	// healing.
	QuiesceTimeout time.Duration
	// PSPFaultWindow is how long a PSP fault episode keeps its faults on.
	PSPFaultWindow time.Duration
	// Repo is the module root (go build, go tool run there).
	Repo string
	// WorkDir is where the run's directory is created (default: os.TempDir).
	WorkDir string
	// Keep keeps the run directory (data, logs, history) even on success.
	Keep bool
	// ChildLogLevel is PAYPIPE_LOG_LEVEL for the children.
	ChildLogLevel string
}

// tier returns a preset. small is what CI runs (a few minutes); soak is
// the 10,000-checkout run with faults firing throughout.
func tier(name string) (Config, error) {
	c := Config{Tier: name, Concurrency: 16, HostedShare: 0.2, SaleShare: 0.5, PayoutEvery: 8 * time.Second,
		Scenarios: slices.Clone(allScenarios), Rounds: 1, OpTimeout: 45 * time.Second, ChildLogLevel: "warn"}
	switch name {
	case "ci":
		// The Go test's tier: everything but F16, whose freeze must outlast
		// AckWait (30 s), to stay within three minutes on two cores.
		c.Checkouts, c.Rate, c.QuiesceTimeout, c.PSPFaultWindow = 240, 5, 150*time.Second, 5*time.Second
		c.Scenarios = slices.DeleteFunc(c.Scenarios, func(s string) bool { return s == scSlowHandler })
	case "small":
		c.Checkouts, c.Rate, c.QuiesceTimeout, c.PSPFaultWindow = 400, 5, 180*time.Second, 6*time.Second
	case "soak":
		c.Checkouts, c.Rate, c.Concurrency, c.Rounds = 10_000, 20, 32, 8
		c.PayoutEvery = 20 * time.Second
		c.QuiesceTimeout, c.PSPFaultWindow = 5*time.Minute, 10*time.Second
	default:
		return c, fmt.Errorf("unknown tier %q (ci, small, soak)", name)
	}
	return c, nil
}

func (c Config) validate() error {
	var errs []error
	if c.Checkouts < 1 || c.Checkouts > 1_000_000 {
		errs = append(errs, fmt.Errorf("checkouts %d: want 1 to 1,000,000", c.Checkouts))
	}
	if !(c.Rate > 0 && c.Rate <= 1000) {
		errs = append(errs, fmt.Errorf("rate %v: want (0, 1000] per second", c.Rate))
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("concurrency %d: want 1 to 256", c.Concurrency))
	}
	if !(c.HostedShare >= 0 && c.HostedShare <= 1) {
		errs = append(errs, fmt.Errorf("hosted share %v: want 0 to 1", c.HostedShare))
	}
	if !(c.SaleShare >= 0 && c.SaleShare <= 1) {
		errs = append(errs, fmt.Errorf("sale share %v: want 0 to 1", c.SaleShare))
	}
	if c.PayoutEvery < time.Second || c.PayoutEvery > time.Hour {
		errs = append(errs, fmt.Errorf("payout interval %s: want 1s to 1h", c.PayoutEvery))
	}
	if c.Rounds < 1 || c.Rounds > 1000 {
		errs = append(errs, fmt.Errorf("rounds %d: want 1 to 1000", c.Rounds))
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(allScenarios, s) {
			errs = append(errs, fmt.Errorf("unknown scenario %q (known: %s)", s, strings.Join(allScenarios, ", ")))
		}
	}
	if c.OpTimeout < time.Second || c.QuiesceTimeout < 10*time.Second || c.PSPFaultWindow < time.Second {
		errs = append(errs, errors.New("op timeout ≥ 1s, quiesce timeout ≥ 10s and PSP fault window ≥ 1s"))
	}
	if c.Repo == "" {
		errs = append(errs, errors.New("repo (module root) is required"))
	}
	return errors.Join(errs...)
}

func (c Config) has(scenario string) bool { return slices.Contains(c.Scenarios, scenario) }
