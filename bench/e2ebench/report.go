package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is bench/results/e2e.json.
type Report struct {
	Machine  Machine       `json:"machine"`
	Settings Settings      `json:"settings"`
	Summary  Summary       `json:"summary"`
	Targets  []TargetCheck `json:"targets"`
	Figures  []Figure      `json:"figures"`
	// CommitProbe is PostgreSQL's rate of small write transactions here.
	CommitProbe *CommitProbe `json:"commit_probe,omitempty"`
	// IdleCommits is the idle pipeline's commit rate, per relay mode.
	IdleCommits []IdleCommits `json:"idle_commits"`
	// Children are the paypipe processes run, one per relay mode.
	Children        []ChildRun `json:"paypipe_processes"`
	DurationSeconds float64    `json:"duration_seconds"`
}

// ChildRun is one `paypipe serve` the bench ran, and how it ended.
type ChildRun struct {
	RelayMode string `json:"relay_mode"`
	Database  string `json:"database"`
	PID       int    `json:"pid,omitempty"`
	Stop      string `json:"stop"`
}

type Machine struct {
	NumCPU           int               `json:"nproc"`
	CPUModel         string            `json:"cpu_model,omitempty"`
	MemoryBytes      int64             `json:"memory_bytes"`
	Kernel           string            `json:"kernel,omitempty"`
	GOOS             string            `json:"goos"`
	GoVersion        string            `json:"go_version"`
	PaypipeGoVersion string            `json:"paypipe_go_version,omitempty"`
	NATSServer       string            `json:"nats_server_version,omitempty"`
	NATSClient       string            `json:"nats_go_version,omitempty"`
	PostgreSQL       string            `json:"postgresql_version"`
	PGSettings       map[string]string `json:"postgresql_settings,omitempty"`
	Date             string            `json:"date"`
}

type Settings struct {
	Quick            bool     `json:"quick"`
	RelayModes       []string `json:"relay_modes"`
	Checkouts        int      `json:"saturation_checkouts"`
	Clients          int      `json:"saturation_clients"`
	PacedRate        int      `json:"paced_offered_per_s"`
	ExtraRates       []int    `json:"paced_extra_rates_per_s,omitempty"`
	PacedSeconds     float64  `json:"paced_seconds"`
	TwoOrders        bool     `json:"two_orders_variant"`
	Sellers          int      `json:"sellers"`
	Warmup           int      `json:"warmup_checkouts"`
	SettleSeconds    float64  `json:"stats_settle_seconds"`
	BaselineSeconds  float64  `json:"idle_baseline_seconds"`
	MaxInFlight      int      `json:"paced_max_in_flight"`
	Checkout         string   `json:"checkout"`
	Paypipe          string   `json:"paypipe"`
	Notes            []string `json:"notes"`
	FinishTimeoutSec float64  `json:"finish_timeout_seconds"`
}

func settingsOf(c Config) Settings {
	return Settings{
		Quick: c.Quick, RelayModes: c.Modes, Checkouts: c.Checkouts, Clients: c.Clients,
		PacedRate: c.PacedRate, ExtraRates: c.ExtraRates, PacedSeconds: c.PacedFor.Seconds(), TwoOrders: c.TwoOrders,
		Sellers: c.Sellers, Warmup: c.Warmup, SettleSeconds: c.Settle.Seconds(), BaselineSeconds: c.BaselineFor.Seconds(),
		MaxInFlight: c.MaxInFlight, FinishTimeoutSec: c.FinishTimeout.Seconds(),
		Checkout: "POST /v1/checkouts, mode direct, payment_method pm_card_visa, USD, one order (two in saturation-2-orders), " +
			"orders spread round robin over the sellers, a fresh Idempotency-Key each",
		Paypipe: "the built binary: `paypipe serve` (all services) as a child process, fresh database, embedded NATS " +
			"(JetStream file store, sync_interval always), embedded PSP simulator, PAYPIPE_LOG_LEVEL=warn",
		Notes: []string{
			"one machine: PostgreSQL, paypipe (services, embedded NATS, PSP simulator) and the bench's clients share its cores",
			"e2e_pps = completed checkouts / (first request start → last checkout completion); accept_pps = 201s / (first request start → last 201 answer)",
			"latency = checkout's transition to completed in payment.status_transitions (`at` = now() of the completing transaction, i.e. its start, " +
				"a few ms before its commit) − the client's request start, same machine clock; not polled",
			"paced is an open loop: request i is sent at start + i/rate from its own goroutine; max_send_lag_ms is how far the client slipped",
			"commits: pg_stat_database.xact_commit of the bench database, read before and after the scenario, after a settle: a backend flushes its counters " +
				"at most once a second, and one that went idle within a second of its last flush only after 10 s (PGSTAT_IDLE_INTERVAL); pg_stat_force_next_flush() " +
				"(PostgreSQL 15+) flushes only the caller's own backend, so it cannot help here; commits_per_payment_net subtracts the idle " +
				"pipeline's rate × window (polling relays, consumers and loops; measured before, an overestimate under load, when polls find work) and the bench's own queries",
			"events: rows added to every service's outbox table (payment, executor, ledger, wallet) / completed checkouts",
			"cpu: /proc tick counters over request start → all checkouts final; postgres_cores counts every postgres process on the machine",
		},
	}
}

// Figure is one scenario in one relay mode.
type Figure struct {
	RelayMode         string  `json:"relay_mode"`
	Scenario          string  `json:"scenario"`
	OrdersPerCheckout int     `json:"orders_per_checkout"`
	Clients           int     `json:"clients,omitempty"`
	OfferedPPS        float64 `json:"offered_per_s,omitempty"`
	MaxSendLagMs      float64 `json:"max_send_lag_ms,omitempty"`
	Requests          int     `json:"requests"`
	Skipped           int     `json:"skipped,omitempty"`
	Accepted          int     `json:"accepted_201"`
	APIErrors         int     `json:"api_errors"`
	APIErrorSample    string  `json:"api_error_sample,omitempty"`
	Completed         int     `json:"completed"`
	Failed            int     `json:"failed"`
	Unfinished        int     `json:"unfinished"`

	// Seconds is first request start → last completion.
	Seconds       float64 `json:"seconds"`
	E2EPPS        float64 `json:"e2e_pps"`
	AcceptSeconds float64 `json:"accept_seconds"`
	AcceptPPS     float64 `json:"accept_pps"`
	// APILatency is the POST's own latency (request start → answer read).
	APILatency Latency `json:"api_latency_ms"`
	// Latency is request start → checkout COMPLETED.
	Latency Latency `json:"latency_ms"`
	// Stages splits Latency of completed checkouts by the statuses in
	// payment.status_transitions: "request→created" is the API's
	// transaction, "created→processing" … "succeeded→completed" the rest.
	Stages map[string]Latency `json:"stage_latency_ms,omitempty"`

	// Hops are the pipeline's steps (see Hop), sorted by name.
	Hops      []Hop    `json:"hops,omitempty"`
	HopErrors []string `json:"hop_errors,omitempty"`

	// PGActivity is paypipe's PostgreSQL connections during the load.
	PGActivity PGActivity `json:"pg_activity"`

	Commits          CommitFigures      `json:"commits"`
	EventsPerPayment float64            `json:"events_per_payment"`
	Events           int64              `json:"events"`
	EventsBySubject  map[string]float64 `json:"events_per_payment_by_schema_subject,omitempty"`
	// RowWritesPerPayment is (inserted + updated + deleted rows) per
	// completed checkout, per table, from pg_stat_user_tables.
	RowWritesPerPayment map[string]float64 `json:"row_writes_per_payment,omitempty"`
	CPU                 CPUFigures         `json:"cpu"`
	LoadAvg             []float64          `json:"loadavg_1m_before_after,omitempty"`
	// ChildLogLines counts lines paypipe logged (warnings and errors).
	ChildLogLines  int      `json:"child_log_lines"`
	ChildLogSample []string `json:"child_log_sample,omitempty"`
	Profile        *Profile `json:"perf_profile,omitempty"`
	Error          string   `json:"error,omitempty"`
}

type Latency struct {
	N      int     `json:"n"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
	Min    float64 `json:"min"`
	StdDev float64 `json:"stddev"`
}

type CommitFigures struct {
	WindowSeconds float64 `json:"window_seconds"`
	XactCommit    int64   `json:"xact_commit_delta"`
	XactRollback  int64   `json:"xact_rollback_delta"`
	// Idle is the idle pipeline's rate × window; Own the bench's queries.
	Idle             float64 `json:"idle_estimate"`
	Own              int64   `json:"bench_queries"`
	PerPayment       float64 `json:"commits_per_payment_raw"`
	NetPerPayment    float64 `json:"commits_per_payment_net"`
	NetPerSecondLoad float64 `json:"net_commits_per_s_at_e2e_pps"`
}

// PGActivity averages pg_stat_activity samples (every 200 ms from request
// start until all checkouts are final) of paypipe's connections to the bench
// database: how many it held, how many were running a statement (and what
// those waited for: "CPU" when not waiting), idle inside a transaction (the
// process was working between statements) or idle in the pool.
type PGActivity struct {
	Samples     int                `json:"samples"`
	Conns       float64            `json:"connections"`
	Active      float64            `json:"active"`
	IdleInTx    float64            `json:"idle_in_transaction"`
	Idle        float64            `json:"idle"`
	ActiveWaits map[string]float64 `json:"active_by_wait_event,omitempty"`
	// IdleInTxAfter: idle-in-transaction connections by the last statement
	// they ran (pg_stat_activity.query, cut).
	IdleInTxAfter map[string]float64 `json:"idle_in_transaction_after,omitempty"`
	// LockWaitsIn: active connections waiting on a lock, by statement.
	LockWaitsIn map[string]float64 `json:"lock_waits_in,omitempty"`
}

type CPUFigures struct {
	Seconds       float64 `json:"seconds"`
	Cores         int     `json:"cores"`
	BusyPct       float64 `json:"machine_busy_pct"`
	IOWaitPct     float64 `json:"machine_iowait_pct"`
	BusyCores     float64 `json:"busy_cores"`
	PaypipeCores  float64 `json:"paypipe_cores"`
	PostgresCores float64 `json:"postgres_cores"`
	BenchCores    float64 `json:"bench_client_cores"`
	OtherCores    float64 `json:"other_cores"`
}

type CommitProbe struct {
	Clients   int     `json:"clients"`
	Seconds   float64 `json:"seconds"`
	Commits   int64   `json:"commits"`
	PerSecond float64 `json:"commits_per_s"`
	What      string  `json:"what"`
}

type IdleCommits struct {
	RelayMode string     `json:"relay_mode"`
	Seconds   float64    `json:"seconds"`
	Commits   int64      `json:"commits"`
	PerSecond float64    `json:"commits_per_s"`
	CPU       CPUFigures `json:"cpu"`
}

// Profile summarises a `perf record -a` of a scenario (percentages of all
// samples on the machine).
type Profile struct {
	Dir         string   `json:"dir"`
	ByCommand   []string `json:"by_command"`
	PaypipeTop  []string `json:"paypipe_top"`
	PostgresTop []string `json:"postgres_top"`
}

type Summary struct {
	Line              string  `json:"line"`
	E2EPPS            float64 `json:"e2e_pps"`
	AcceptPPS         float64 `json:"accept_pps"`
	P50ms             float64 `json:"p50_ms"`
	P99ms             float64 `json:"p99_ms"`
	CommitsPerPayment float64 `json:"commits_per_payment"`
	EventsPerPayment  float64 `json:"events_per_payment"`
	Description       string  `json:"description"`
}

type TargetCheck struct {
	Target    string  `json:"target"`
	RelayMode string  `json:"relay_mode"`
	Scenario  string  `json:"scenario"`
	Measured  float64 `json:"measured"`
	Goal      float64 `json:"goal"`
	Met       bool    `json:"met"`
}

// tallyRequests fills the API side of f.
func (f *Figure) tallyRequests(rs []reqResult, ds driveStats) {
	f.Requests, f.Skipped, f.Clients, f.OfferedPPS = len(rs), ds.Skipped, ds.Clients, ds.OfferedPPS
	f.MaxSendLagMs = round(ms(ds.MaxLag), 1)
	var first, last time.Time
	var api []float64
	errs := map[string]int{}
	for _, r := range rs {
		if first.IsZero() || r.start.Before(first) {
			first = r.start
		}
		if r.id == "" {
			f.APIErrors++
			key, _, _ := strings.Cut(r.err, " ")
			errs[key]++
			if f.APIErrorSample == "" {
				f.APIErrorSample = r.err
			}
			continue
		}
		f.Accepted++
		api = append(api, ms(r.dur))
		if end := r.start.Add(r.dur); end.After(last) {
			last = end
		}
	}
	if len(errs) > 1 {
		f.APIErrorSample = fmt.Sprintf("%v; first: %s", errs, f.APIErrorSample)
	}
	if f.Accepted > 0 {
		f.AcceptSeconds = round(last.Sub(first).Seconds(), 3)
		if f.AcceptSeconds > 0 {
			f.AcceptPPS = round(float64(f.Accepted)/f.AcceptSeconds, 1)
		}
	}
	slices.Sort(api)
	f.APILatency = latencyOf(api)
}

// costs fills commits, events and row writes per completed checkout.
func (f *Figure) costs(before, after snap, idlePerSec float64) {
	c := &f.Commits
	c.WindowSeconds = round(after.at.Sub(before.at).Seconds(), 2)
	c.XactCommit = after.commits.commit - before.commits.commit
	c.XactRollback = after.commits.rollback - before.commits.rollback
	c.Own = after.own - before.own
	c.Idle = round(idlePerSec*c.WindowSeconds, 0)
	if f.Completed == 0 {
		return
	}
	n := float64(f.Completed)
	c.PerPayment = round(float64(c.XactCommit)/n, 2)
	c.NetPerPayment = round((float64(c.XactCommit)-c.Idle-float64(c.Own))/n, 2)
	c.NetPerSecondLoad = round(c.NetPerPayment*f.E2EPPS, 0)

	f.EventsBySubject = map[string]float64{}
	for k, v := range after.outbox {
		if d := v - before.outbox[k]; d > 0 {
			f.Events += d
			f.EventsBySubject[k] = round(float64(d)/n, 2)
		}
	}
	f.EventsPerPayment = round(float64(f.Events)/n, 2)
	f.RowWritesPerPayment = map[string]float64{}
	for k, v := range after.tables {
		if d := float64(v-before.tables[k]) / n; d >= 0.005 {
			f.RowWritesPerPayment[k] = round(d, 2)
		}
	}
}

func (f Figure) oneLine() string {
	if f.Error != "" && f.Completed == 0 {
		return "error: " + f.Error
	}
	s := fmt.Sprintf("%d/%d completed (%d failed, %d unfinished, %d API errors) in %.1fs: e2e %.0f/s, accept %.0f/s, latency p50 %.0f ms p99 %.0f ms max %.0f ms; commits/payment %.1f net (%.1f raw), events/payment %.1f; CPU %.0f%% busy (paypipe %.2f, postgres %.2f, clients %.2f cores)",
		f.Completed, f.Requests, f.Failed, f.Unfinished, f.APIErrors, f.Seconds, f.E2EPPS, f.AcceptPPS,
		f.Latency.P50, f.Latency.P99, f.Latency.Max, f.Commits.NetPerPayment, f.Commits.PerPayment, f.EventsPerPayment,
		f.CPU.BusyPct, f.CPU.PaypipeCores, f.CPU.PostgresCores, f.CPU.BenchCores)
	if f.Error != "" {
		s += "; error: " + f.Error
	}
	return s
}

func (r *Report) find(mode, scenario string) *Figure {
	for i := range r.Figures {
		if f := &r.Figures[i]; f.RelayMode == mode && f.Scenario == scenario && f.Completed > 0 {
			return f
		}
	}
	return nil
}

func (r *Report) findPaced(mode string, rate int) *Figure {
	for i := range r.Figures {
		if f := &r.Figures[i]; f.RelayMode == mode && f.Scenario == ScenarioPaced && f.OfferedPPS == float64(rate) && f.Completed > 0 {
			return f
		}
	}
	return nil
}

func (r *Report) finish() {
	s := Summary{Description: "first relay mode (" + strings.Join(r.Settings.RelayModes[:min(1, len(r.Settings.RelayModes))], "") +
		"): e2e_pps, commits and events from saturation (commits_per_payment = net of the idle pipeline and the bench's own queries); " +
		"p50/p99 from paced: request start → checkout COMPLETED"}
	if len(r.Settings.RelayModes) > 0 {
		mode := r.Settings.RelayModes[0]
		if f := r.find(mode, ScenarioSaturation); f != nil {
			s.E2EPPS, s.AcceptPPS = f.E2EPPS, f.AcceptPPS
			s.CommitsPerPayment, s.EventsPerPayment = f.Commits.NetPerPayment, f.EventsPerPayment
		}
		if f := r.findPaced(mode, r.Settings.PacedRate); f != nil {
			s.P50ms, s.P99ms = f.Latency.P50, f.Latency.P99
		}
	}
	s.Line = fmt.Sprintf("e2e_pps=%.0f p50_ms=%.0f p99_ms=%.0f commits_per_payment=%.1f events_per_payment=%.1f",
		s.E2EPPS, s.P50ms, s.P99ms, s.CommitsPerPayment, s.EventsPerPayment)
	r.Summary = s

	r.Targets = nil
	for _, f := range r.Figures {
		if f.Completed == 0 {
			continue
		}
		switch f.Scenario {
		case ScenarioSaturation:
			r.Targets = append(r.Targets, TargetCheck{"completed payments/s at saturation ≥ 500", f.RelayMode, f.Scenario, f.E2EPPS, 500, f.E2EPPS >= 500})
		case ScenarioPaced:
			if f.OfferedPPS != float64(r.Settings.PacedRate) {
				continue
			}
			r.Targets = append(r.Targets, TargetCheck{fmt.Sprintf("p99 request → COMPLETED ≤ 1000 ms at %.0f/s", f.OfferedPPS), f.RelayMode, f.Scenario, f.Latency.P99, 1000, f.Latency.P99 <= 1000})
		}
	}
}

// problems is an error if any checkout was refused, failed or never
// finished, or a scenario did not run: the figures would not mean what
// they say.
func (r *Report) problems() error {
	var errs []error
	for _, f := range r.Figures {
		if f.Error != "" || f.APIErrors > 0 || f.Failed > 0 || f.Unfinished > 0 || f.Skipped > 0 {
			errs = append(errs, fmt.Errorf("%s %s: %d API errors, %d failed, %d unfinished, %d not sent %s",
				f.RelayMode, f.Scenario, f.APIErrors, f.Failed, f.Unfinished, f.Skipped, strings.TrimSpace(f.APIErrorSample+" "+f.Error)))
		}
	}
	return errors.Join(errs...)
}

// PrintTable writes the report for people.
func PrintTable(w io.Writer, r *Report) {
	m := r.Machine
	fmt.Fprintf(w, "\npaypipe end-to-end pay-in bench — %d CPUs (%s), %.1f GiB, %s, %s, nats-server %s, %s\n",
		m.NumCPU, m.CPUModel, float64(m.MemoryBytes)/(1<<30), m.GoVersion, firstWords(m.PostgreSQL, 2), m.NATSServer, m.Date)
	if r.Settings.Quick {
		fmt.Fprintln(w, "QUICK RUN: tiny sizes, a smoke test of the bench, not a measurement")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "relay mode\tscenario\tsent\tcompleted\tfailed\te2e/s\taccept/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tcommits/pay\tevents/pay\tbusy %\tpaypipe cores\tpg cores\t")
	for _, f := range r.Figures {
		scen := f.Scenario
		if f.OfferedPPS > 0 {
			scen = fmt.Sprintf("%s %.0f/s", scen, f.OfferedPPS)
		} else if f.Clients > 0 {
			scen = fmt.Sprintf("%s ×%d", scen, f.Clients)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.0f\t%.2f\t%.2f\t\n",
			f.RelayMode, scen, f.Requests, f.Completed, f.Failed+f.Unfinished+f.APIErrors, f.E2EPPS, f.AcceptPPS,
			f.Latency.P50, f.Latency.P90, f.Latency.P99, f.Latency.Max, f.Commits.NetPerPayment, f.EventsPerPayment,
			f.CPU.BusyPct, f.CPU.PaypipeCores, f.CPU.PostgresCores)
	}
	_ = tw.Flush()
	for _, f := range r.Figures {
		if f.Error != "" {
			fmt.Fprintf(w, "  %s %s: ERROR %s\n", f.RelayMode, f.Scenario, f.Error)
		}
		if f.ChildLogLines > 0 {
			fmt.Fprintf(w, "  %s %s: paypipe logged %d warning/error lines, last: %s\n", f.RelayMode, f.Scenario, f.ChildLogLines, strings.Join(f.ChildLogSample, " | "))
		}
	}
	if p := r.CommitProbe; p != nil {
		fmt.Fprintf(w, "\nPostgreSQL commit probe: %.0f small state+outbox transactions/s (%d connections, %.1fs)\n", p.PerSecond, p.Clients, p.Seconds)
	}
	for _, b := range r.IdleCommits {
		fmt.Fprintf(w, "idle pipeline (%s): %.0f commits/s, paypipe %.2f cores, postgres %.2f cores\n", b.RelayMode, b.PerSecond, b.CPU.PaypipeCores, b.CPU.PostgresCores)
	}
	if len(r.Settings.RelayModes) > 0 {
		if f := r.find(r.Settings.RelayModes[0], ScenarioSaturation); f != nil {
			fmt.Fprintf(w, "\n%s saturation, per completed checkout: %.1f commits raw (%d in %.1fs, idle estimate %.0f, bench %d), %.1f net; %.2f events; API p50 %.0f ms p99 %.0f ms\n",
				f.RelayMode, f.Commits.PerPayment, f.Commits.XactCommit, f.Commits.WindowSeconds, f.Commits.Idle, f.Commits.Own, f.Commits.NetPerPayment,
				f.EventsPerPayment, f.APILatency.P50, f.APILatency.P99)
			printTop(w, "  events", f.EventsBySubject, 12)
			printTop(w, "  row writes", f.RowWritesPerPayment, 12)
			a := f.PGActivity
			fmt.Fprintf(w, "  paypipe's PostgreSQL connections (avg of %d samples): %.1f held, %.1f active, %.1f idle in transaction, %.1f idle; active by wait: %s\n",
				a.Samples, a.Conns, a.Active, a.IdleInTx, a.Idle, fmtMap(a.ActiveWaits))
			fmt.Fprintf(w, "  idle in transaction after: %s\n  lock waits in: %s\n", fmtMap(a.IdleInTxAfter), fmtMap(a.LockWaitsIn))
			fmt.Fprintf(w, "  cpu over %.1fs: machine %.0f%% busy, %.0f%% iowait; paypipe %.2f cores, postgres %.2f, clients %.2f, other %.2f\n",
				f.CPU.Seconds, f.CPU.BusyPct, f.CPU.IOWaitPct, f.CPU.PaypipeCores, f.CPU.PostgresCores, f.CPU.BenchCores, f.CPU.OtherCores)
			if p := f.Profile; p != nil {
				fmt.Fprintf(w, "  perf (%s): by command: %s\n", p.Dir, strings.Join(p.ByCommand, "; "))
				fmt.Fprintf(w, "  perf paypipe top: %s\n", strings.Join(p.PaypipeTop[:min(14, len(p.PaypipeTop))], "; "))
				fmt.Fprintf(w, "  perf postgres top: %s\n", strings.Join(p.PostgresTop[:min(8, len(p.PostgresTop))], "; "))
			}
		}
	}
	for _, f := range r.Figures {
		if len(f.Hops) > 0 {
			hs := slices.Clone(f.Hops)
			slices.SortFunc(hs, func(a, b Hop) int { return cmp.Compare(b.P50, a.P50) })
			var parts []string
			for _, h := range hs[:min(7, len(hs))] {
				parts = append(parts, fmt.Sprintf("%s %.0f/%.0f", h.Name, h.P50, h.P99))
			}
			fmt.Fprintf(w, "\n%s %s, slowest hops p50/p99 ms: %s", f.RelayMode, f.Scenario, strings.Join(parts, "; "))
		}
		for _, e := range f.HopErrors {
			fmt.Fprintf(w, "\n%s %s: hops: %s", f.RelayMode, f.Scenario, e)
		}
	}
	fmt.Fprintln(w)
	for _, f := range r.Figures {
		if f.Scenario == ScenarioPaced && len(f.Stages) > 0 {
			fmt.Fprintf(w, "\n%s paced, stages p50/p99 ms:", f.RelayMode)
			prev := "request"
			for _, st := range checkoutStatuses {
				if l, ok := f.Stages[prev+"→"+st]; ok {
					fmt.Fprintf(w, " %s→%s %.0f/%.0f", prev, st, l.P50, l.P99)
					prev = st
				}
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
	for _, t := range r.Targets {
		met := "MISSED"
		if t.Met {
			met = "met"
		}
		fmt.Fprintf(w, "target %-45s %-13s %-20s measured %8.1f goal %6.0f  %s\n", t.Target, t.RelayMode, t.Scenario, t.Measured, t.Goal, met)
	}
}

func printTop(w io.Writer, label string, m map[string]float64, n int) {
	type kv struct {
		k string
		v float64
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(cmp.Compare(b.v, a.v), cmp.Compare(a.k, b.k)) })
	var parts []string
	for _, e := range all[:min(n, len(all))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", e.k, e.v))
	}
	fmt.Fprintf(w, "%s: %s\n", label, strings.Join(parts, ", "))
}

func fmtMap(m map[string]float64) string {
	keys := slices.Sorted(maps.Keys(m))
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(m[b], m[a]) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(n, len(f))], " ")
}

// latencyOf summarises sorted milliseconds.
func latencyOf(sorted []float64) Latency {
	if len(sorted) == 0 {
		return Latency{}
	}
	var sum, sq float64
	for _, v := range sorted {
		sum += v
	}
	mean := sum / float64(len(sorted))
	for _, v := range sorted {
		sq += (v - mean) * (v - mean)
	}
	return Latency{
		N: len(sorted), P50: round(pct(sorted, 50), 1), P90: round(pct(sorted, 90), 1), P99: round(pct(sorted, 99), 1),
		Max: round(sorted[len(sorted)-1], 1), Min: round(sorted[0], 1), Mean: round(mean, 1),
		StdDev: round(math.Sqrt(sq/float64(len(sorted))), 1),
	}
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
