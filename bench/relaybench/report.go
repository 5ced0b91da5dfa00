package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Report is bench/results/relay.json.
type Report struct {
	Machine         Machine       `json:"machine"`
	Settings        Settings      `json:"settings"`
	Summary         Summary       `json:"summary"`
	Targets         []TargetCheck `json:"targets"`
	Figures         []Figure      `json:"figures"`
	DurationSeconds float64       `json:"duration_seconds"`
	// RelayLogErrors counts warnings and errors logged by the relays
	// (send failures, retried passes); 0 in a clean run.
	RelayLogErrors int64 `json:"relay_log_errors"`
	// RelayShutdownLogErrors counts those logged while relays were being
	// stopped (the forwarder reports its cancelled last query as an error).
	RelayShutdownLogErrors int64 `json:"relay_shutdown_log_errors"`
}

type Machine struct {
	NumCPU      int               `json:"nproc"`
	CPUModel    string            `json:"cpu_model,omitempty"`
	MemoryBytes int64             `json:"memory_bytes"`
	Kernel      string            `json:"kernel,omitempty"`
	GOOS        string            `json:"goos"`
	GoVersion   string            `json:"go_version"`
	NATSServer  string            `json:"nats_server_version"`
	NATSClient  string            `json:"nats_go_version"`
	PostgreSQL  string            `json:"postgresql_version"`
	PGSettings  map[string]string `json:"postgresql_settings,omitempty"`
	Date        string            `json:"date"`
}

type Settings struct {
	Quick           bool     `json:"quick"`
	Experiments     bool     `json:"experiments"`
	Scenarios       []string `json:"scenarios"`
	Syncs           []string `json:"syncs"`
	Writers         int      `json:"writers"`
	DrainEvents     int      `json:"drain_events"`
	DrainReps       int      `json:"drain_reps"`
	PacedRate       int      `json:"paced_events_per_s"`
	PacedSeconds    float64  `json:"paced_seconds"`
	SatSeconds      float64  `json:"saturation_seconds"`
	PayloadBytes    int      `json:"payload_bytes"`
	PaypipeRelay    string   `json:"paypipe_relay"`
	Forwarder       string   `json:"forwarder"`
	ForwarderPollMs float64  `json:"forwarder_poll_interval_ms"`
	Stream          string   `json:"stream"`
	Notes           []string `json:"notes"`
}

func settingsOf(c Config) Settings {
	return Settings{
		Quick: c.Quick, Experiments: c.Experiments, Scenarios: c.Scenarios, Syncs: c.Syncs, Writers: c.Writers,
		DrainEvents: c.DrainEvents, DrainReps: c.Reps, PacedRate: c.PacedRate,
		PacedSeconds: c.PacedFor.Seconds(), SatSeconds: c.SatFor.Seconds(), PayloadBytes: payloadSize,
		PaypipeRelay: "outbox.NewRelay defaults: BatchSize 500, PollInterval 20ms, one batch in flight",
		Forwarder: "watermill v1.5.1 components/forwarder; watermill-sql v4.1.2 DefaultPostgreSQLSchema (SubscribeBatchSize 100) + " +
			"DefaultPostgreSQLOffsetsAdapter; watermill-nats v2.1.3 pkg/nats, JetStream, TrackMsgId, NATSMarshaler",
		ForwarderPollMs: float64(c.ForwarderPoll.Microseconds()) / 1000,
		Stream:          "one per scenario run: R1, file storage, limits retention, Duplicates 2m, AllowAtomicPublish",
		Notes: []string{
			"one process: embedded nats-server, relays, writers and the stream watcher share the CPUs with PostgreSQL",
			"writers commit one event per transaction (drain prefill included); drain tables are ANALYZEd before the relay starts",
			"eps = events/s; drain eps = events / (relay start → stream holds all events), median of drain_reps runs",
			"paced latency = arrival at an ordered JetStream consumer − time the writer saw COMMIT return",
			"saturation end_to_end_eps = events / (writers start → stream holds all events), tail included; ratio = end_to_end / writers_only",
			"every run reads its stream back and fails unless each written event is there exactly once",
		},
	}
}

// Figure is one scenario run of one relay.
type Figure struct {
	Sync       string       `json:"sync"`
	Relay      string       `json:"relay"`
	Scenario   string       `json:"scenario"`
	Drain      *DrainFigure `json:"drain,omitempty"`
	Paced      *PacedFigure `json:"paced,omitempty"`
	Saturation *SatFigure   `json:"saturation,omitempty"`
	Stats      RelayStats   `json:"relay_stats,omitzero"`
	Verified   bool         `json:"verified_exactly_once"`
	// Experiment marks a variant of paypipe's relay (Config.Experiments):
	// not a default configuration, not part of the summary or targets.
	Experiment bool `json:"experiment,omitempty"`
	// Load is where the CPU went while the figure was measured.
	Load  *LoadInfo `json:"load,omitempty"`
	Error string    `json:"error,omitempty"`
}

type DrainFigure struct {
	Events      int       `json:"events"`
	EPS         float64   `json:"eps"`
	Seconds     float64   `json:"seconds"`
	RunsEPS     []float64 `json:"runs_eps"`
	RunsSeconds []float64 `json:"runs_seconds"`
}

type PacedFigure struct {
	Events     int     `json:"events"`
	OfferedEPS int     `json:"offered_eps"`
	Seconds    float64 `json:"seconds"`
	WriterEPS  float64 `json:"writer_eps"`
	Wake       bool    `json:"wake"`
	P50ms      float64 `json:"p50_ms"`
	P90ms      float64 `json:"p90_ms"`
	P99ms      float64 `json:"p99_ms"`
	P999ms     float64 `json:"p999_ms"`
	MaxMs      float64 `json:"max_ms"`
	MeanMs     float64 `json:"mean_ms"`
}

type SatFigure struct {
	Events              int     `json:"events"`
	WritersOnlyEPS      float64 `json:"writers_only_eps"`
	WritersEPS          float64 `json:"writers_eps_with_relay,omitempty"`
	EndToEndEPS         float64 `json:"end_to_end_eps,omitempty"`
	Ratio               float64 `json:"ratio,omitempty"`
	TailSeconds         float64 `json:"tail_seconds,omitempty"`
	BacklogAtWritersEnd int     `json:"backlog_at_writers_end,omitempty"`
}

type Summary struct {
	Line        string  `json:"line"`
	RelayEPS    float64 `json:"relay_eps"`
	PeerEPS     float64 `json:"peer_eps"`
	Ratio       float64 `json:"ratio"`
	RelayP99ms  float64 `json:"relay_p99_ms"`
	WritersEPS  float64 `json:"writers_eps"`
	Description string  `json:"description"`
}

// TargetCheck is one of the targets the bench reports against.
type TargetCheck struct {
	Target   string  `json:"target"`
	Sync     string  `json:"sync"`
	Relay    string  `json:"relay"`
	Measured float64 `json:"measured"`
	Goal     float64 `json:"goal"`
	Met      bool    `json:"met"`
}

func (r *Report) find(sync, relay, scenario string) *Figure {
	for i := range r.Figures {
		f := &r.Figures[i]
		if f.Sync == sync && f.Relay == relay && f.Scenario == scenario && f.Error == "" && !f.Experiment {
			return f
		}
	}
	return nil
}

func (r *Report) finish() {
	s := Summary{Description: "relay_eps/peer_eps: drain, default sync (paypipe/async vs forwarder); " +
		"relay_p99_ms: paypipe/async paced p99, default sync, polling only; writers_eps: paypipe writers-only saturation rate, default sync"}
	if f := r.find("default", "paypipe/async", "drain"); f != nil {
		s.RelayEPS = f.Drain.EPS
	}
	if f := r.find("default", "forwarder", "drain"); f != nil {
		s.PeerEPS = f.Drain.EPS
	}
	if s.PeerEPS > 0 {
		s.Ratio = round(s.RelayEPS/s.PeerEPS, 2)
	}
	if f := r.find("default", "paypipe/async", "paced"); f != nil {
		s.RelayP99ms = f.Paced.P99ms
	}
	if f := r.find("default", "paypipe writers", "writers-only"); f != nil {
		s.WritersEPS = f.Saturation.WritersOnlyEPS
	}
	s.Line = fmt.Sprintf("relay_eps=%.0f peer_eps=%.0f ratio=%.2f relay_p99_ms=%.2f writers_eps=%.0f",
		s.RelayEPS, s.PeerEPS, s.Ratio, s.RelayP99ms, s.WritersEPS)
	r.Summary = s

	r.Targets = nil
	for _, sync := range r.Settings.Syncs {
		peer := r.find(sync, "forwarder", "drain")
		for _, f := range r.Figures {
			if f.Sync != sync || f.Error != "" || f.Experiment || !strings.HasPrefix(f.Relay, "paypipe/") {
				continue
			}
			switch {
			case f.Scenario == "drain" && peer != nil && peer.Drain.EPS > 0:
				ratio := round(f.Drain.EPS/peer.Drain.EPS, 2)
				r.Targets = append(r.Targets, TargetCheck{"drain eps ≥ 5× forwarder", sync, f.Relay, ratio, 5, ratio >= 5})
			case f.Scenario == "paced" || f.Scenario == "paced+wake":
				r.Targets = append(r.Targets, TargetCheck{"paced p99 ≤ 20 ms (" + f.Scenario + ")", sync, f.Relay, f.Paced.P99ms, 20, f.Paced.P99ms <= 20})
			case f.Scenario == "saturation":
				r.Targets = append(r.Targets, TargetCheck{"saturation end-to-end ≥ 95% of writers-only", sync, f.Relay, f.Saturation.Ratio, 0.95, f.Saturation.Ratio >= 0.95})
			}
		}
	}
}

func (f Figure) oneLine() string {
	head := fmt.Sprintf("%-7s %-20s %-12s", f.Sync, f.Relay, f.Scenario)
	switch {
	case f.Drain != nil:
		return fmt.Sprintf("%s %6.0f ev/s (%d events, %.2fs; runs %v)", head, f.Drain.EPS, f.Drain.Events, f.Drain.Seconds, f.Drain.RunsEPS)
	case f.Paced != nil:
		p := f.Paced
		line := fmt.Sprintf("%s p50 %.1f ms  p99 %.1f ms  max %.1f ms (%d events at %d/s, writers %.0f/s)", head, p.P50ms, p.P99ms, p.MaxMs, p.Events, p.OfferedEPS, p.WriterEPS)
		if f.Stats.Passes > 0 {
			line += fmt.Sprintf("; %d passes, mean batch %.1f", f.Stats.Passes, f.Stats.MeanBatch)
		}
		if f.Stats.PassP50ms > 0 {
			line += fmt.Sprintf("; pass p50 %.2f p99 %.2f max %.2f ms", f.Stats.PassP50ms, f.Stats.PassP99ms, f.Stats.PassMaxMs)
		}
		return line
	case f.Saturation != nil && f.Scenario == "writers-only":
		return fmt.Sprintf("%s %6.0f ev/s (%d events)", head, f.Saturation.WritersOnlyEPS, f.Saturation.Events)
	case f.Saturation != nil:
		s := f.Saturation
		return fmt.Sprintf("%s end-to-end %.0f ev/s = %.0f%% of writers-only %.0f (writers with relay %.0f/s, tail %.2fs, %d events)",
			head, s.EndToEndEPS, 100*s.Ratio, s.WritersOnlyEPS, s.WritersEPS, s.TailSeconds, s.Events)
	}
	return head
}

// PrintTable writes the figures as a table, the experiments as a second
// one, then the targets.
func PrintTable(w io.Writer, r *Report) {
	var main, exps []Figure
	for _, f := range r.Figures {
		if f.Experiment {
			exps = append(exps, f)
		} else {
			main = append(main, f)
		}
	}
	printFigures(w, main)
	if len(exps) > 0 {
		fmt.Fprintln(w, "\nexperiments: variants of paypipe's relay (not defaults; not in the summary or targets)")
		printFigures(w, exps)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "target\tsync\trelay\tmeasured\tmet")
		for _, t := range r.Targets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%g\t%v\n", t.Target, t.Sync, t.Relay, t.Measured, t.Met)
		}
		_ = tw.Flush()
	}
	for _, f := range r.Figures {
		if f.Error != "" {
			fmt.Fprintf(w, "FAILED %s %s %s: %s\n", f.Sync, f.Relay, f.Scenario, f.Error)
		}
	}
}

func printFigures(w io.Writer, figs []Figure) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sync\trelay\tscenario\tevents\tev/s\tp50 ms\tp99 ms\tmax ms\twriters-only ev/s\te2e/writers\tpasses\tmean batch\tpass p99 ms\tother cpu\t")
	for _, f := range figs {
		cols := make([]string, 14)
		cols[0], cols[1], cols[2] = f.Sync, f.Relay, f.Scenario
		switch {
		case f.Error != "":
			cols[3] = "FAILED"
		case f.Drain != nil:
			cols[3] = fmt.Sprint(f.Drain.Events)
			cols[4] = fmt.Sprintf("%.0f", f.Drain.EPS)
		case f.Paced != nil:
			cols[3] = fmt.Sprint(f.Paced.Events)
			cols[4] = fmt.Sprintf("%.0f", f.Paced.WriterEPS)
			cols[5] = fmt.Sprintf("%.1f", f.Paced.P50ms)
			cols[6] = fmt.Sprintf("%.1f", f.Paced.P99ms)
			cols[7] = fmt.Sprintf("%.1f", f.Paced.MaxMs)
		case f.Saturation != nil && f.Scenario == "writers-only":
			cols[3] = fmt.Sprint(f.Saturation.Events)
			cols[4] = fmt.Sprintf("%.0f", f.Saturation.WritersOnlyEPS)
			cols[8] = cols[4]
		case f.Saturation != nil:
			cols[3] = fmt.Sprint(f.Saturation.Events)
			cols[4] = fmt.Sprintf("%.0f", f.Saturation.EndToEndEPS)
			cols[8] = fmt.Sprintf("%.0f", f.Saturation.WritersOnlyEPS)
			cols[9] = fmt.Sprintf("%.0f%%", 100*f.Saturation.Ratio)
		}
		if f.Stats.Passes > 0 {
			cols[10] = fmt.Sprint(f.Stats.Passes)
			cols[11] = fmt.Sprintf("%.1f", f.Stats.MeanBatch)
		}
		if f.Stats.PassP99ms > 0 {
			cols[12] = fmt.Sprintf("%.1f", f.Stats.PassP99ms)
		}
		if f.Load != nil {
			cols[13] = fmt.Sprintf("%.0f%%", f.Load.OtherCPUPct)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	_ = tw.Flush()
}

func round(x float64, digits int) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return 0
	}
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
