// Package config reads paypipe's process configuration from environment
// variables. Every knob has a safe default, except the database, which has no
// safe guess; a value that is present but malformed is an error, never
// silently replaced by the default, so a typo in a deployment fails at start
// instead of running with settings nobody chose.
//
// The environment is passed in as a lookup function rather than read from
// os.Getenv, so tests and the in-process demo can build a configuration
// without touching the process environment.
//
// # Variables
//
//	| variable                  | default                        | meaning |
//	|---------------------------|--------------------------------|---------|
//	| DATABASE_URL              | (none; required by serve, migrate, outbox, demo) | PostgreSQL connection URL (postgres://user:pass@host:port/db?sslmode=…). |
//	| NATS_URL                  | empty: embedded server         | NATS server(s) to use, comma-separated. Empty starts an in-process nats-server with JetStream (file store under PAYPIPE_DATA_DIR/nats-embedded, sync_interval always). |
//	| PAYPIPE_DATA_DIR          | .data                          | Where the embedded NATS server and `paypipe demo` keep their files. |
//	| PAYPIPE_HTTP_ADDR         | 127.0.0.1:8080                 | Listen address of the API (/v1/…), the demo shop (/demo), /metrics, /healthz and /readyz. Loopback by default: expose it deliberately. |
//	| PAYPIPE_RELAY_MODE        | atomic-batch (embedded NATS), async (NATS_URL set) | How relays publish: `atomic-batch` (one fsync per batch; needs nats-server ≥ 2.12 and pays off with sync_interval always) or `async` (one PubAck per message; works with any server). |
//	| PAYPIPE_OUTBOX_RETENTION  | 24h                            | How long published outbox rows are kept: the window `paypipe outbox redrive --since` can reach back. |
//	| PAYPIPE_INBOX_RETENTION   | 40d                            | How long inbox rows are kept. Must be at least 37d (stream MaxAge 7d + DLQ MaxAge 30d): a message can come back that late, and only the inbox stops it being applied twice. |
//	| PAYPIPE_DUPLICATE_WINDOW  | 30m                            | JetStream Nats-Msg-Id deduplication window of every stream (at most 7d). |
//	| PAYPIPE_LOG_LEVEL         | info                           | debug, info, warn or error (slog levels; e.g. warn+2 also works). |
//	| PAYPIPE_PSP_URL           | empty: embedded PSP simulator  | Base URL of the PSP API (`paypipe pspsim` or a real PSP adapter's). Empty runs the PSP simulator in-process, with credentials generated at start. |
//	| PAYPIPE_PSP_API_KEY       | (required with PAYPIPE_PSP_URL) | paypipe's API key at the PSP. |
//	| PAYPIPE_PSP_WEBHOOK_SECRETS | (required with PAYPIPE_PSP_URL) | Comma-separated secrets that verify PSP-Signature (two during a rotation), at least 16 characters each. |
//	| PAYPIPE_PSPSIM_ADDR       | 127.0.0.1:8090                 | Listen address of the embedded PSP simulator (hosted payment pages are served there). |
//	| PAYPIPE_PSP_FEE_BPS       | 290                            | The PSP's contracted processing fee per charge in basis points (2.90 %): what the reconciler checks every settlement line's fee against, and what the embedded simulator charges. |
//	| PAYPIPE_PAYOUT_SCHEDULE   | daily@02:00                    | When sellers are paid out: `daily@HH:MM` (UTC), an interval such as `6h`, or `off` (only `paypipe payout run`). |
//	| PAYPIPE_RECON_AT          | 02:30                          | UTC time of the nightly reconciliation of the previous day's settlement file, or `off` (only `paypipe recon run`). |
//	| PAYPIPE_RECON_GRACE_DAYS  | 1                              | Days a movement in the ledger may be missing from the settlement files (carried over, rechecked each night) before it is a finance mismatch. |
//	| PAYPIPE_RECON_REPORT_DIR  | $PAYPIPE_DATA_DIR/recon        | Where each reconciliation run writes its summary and mismatch list (JSON and CSV). |
//	| PAYPIPE_RECON_CHUNK_LINES | 5000                           | Settlement lines reconciled per transaction (1 to 5000): a crashed run resumes after the last committed chunk; memory holds two chunks. |
//	| PAYPIPE_PAYOUT_RESOLVE_AFTER | 10m                         | How long a sent payout waits for the PSP's payout webhook before the resolver asks the PSP (webhooks can be lost). |
//
// Durations take Go syntax (90s, 2h30m) plus a whole-day suffix (40d).
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/paypipe/paypipe/outbox"
)

// Environment variable names.
const (
	EnvDatabaseURL     = "DATABASE_URL"
	EnvNATSURL         = "NATS_URL"
	EnvDataDir         = "PAYPIPE_DATA_DIR"
	EnvHTTPAddr        = "PAYPIPE_HTTP_ADDR"
	EnvRelayMode       = "PAYPIPE_RELAY_MODE"
	EnvOutboxRetention = "PAYPIPE_OUTBOX_RETENTION"
	EnvInboxRetention  = "PAYPIPE_INBOX_RETENTION"
	EnvDuplicateWindow = "PAYPIPE_DUPLICATE_WINDOW"
	EnvLogLevel        = "PAYPIPE_LOG_LEVEL"
	EnvPSPURL          = "PAYPIPE_PSP_URL"
	EnvPSPAPIKey       = "PAYPIPE_PSP_API_KEY"
	EnvPSPSecrets      = "PAYPIPE_PSP_WEBHOOK_SECRETS"
	EnvPSPSimAddr      = "PAYPIPE_PSPSIM_ADDR"
	EnvPSPFeeBPS       = "PAYPIPE_PSP_FEE_BPS"
	EnvPayoutSchedule  = "PAYPIPE_PAYOUT_SCHEDULE"
	EnvReconAt         = "PAYPIPE_RECON_AT"
	EnvReconGraceDays  = "PAYPIPE_RECON_GRACE_DAYS"
	EnvReconReportDir  = "PAYPIPE_RECON_REPORT_DIR"
	EnvReconChunkLines = "PAYPIPE_RECON_CHUNK_LINES"
	EnvPayoutResolve   = "PAYPIPE_PAYOUT_RESOLVE_AFTER"
)

// Defaults and limits.
const (
	DefaultDataDir         = ".data"
	DefaultHTTPAddr        = "127.0.0.1:8080"
	DefaultPSPSimAddr      = "127.0.0.1:8090"
	DefaultOutboxRetention = 24 * time.Hour
	DefaultDuplicateWindow = 30 * time.Minute
	DefaultPSPFeeBPS       = 290
	DefaultPayoutSchedule  = "daily@02:00"
	DefaultReconAt         = "02:30"
	DefaultReconGraceDays  = 1
	DefaultReconChunkLines = 5000
	DefaultPayoutResolve   = 10 * time.Minute

	// StreamMaxAge and DLQMaxAge mirror contracts' stream defaults: the
	// longest a message can stay redeliverable, and the longest a dead
	// letter can wait for `paypipe dlq replay`.
	StreamMaxAge = 7 * 24 * time.Hour
	DLQMaxAge    = 30 * 24 * time.Hour
	// MinInboxRetention is the horizon after which no copy of a message can
	// reach a consumer any more (redelivery from the stream, then a replay
	// from the DLQ). An inbox row swept earlier would let that copy apply
	// twice.
	MinInboxRetention = StreamMaxAge + DLQMaxAge
	// DefaultInboxRetention adds three days of slack to MinInboxRetention
	// for clock skew between hosts and a replay started just before the DLQ
	// message expires.
	DefaultInboxRetention = 40 * 24 * time.Hour
)

// Config is the process configuration.
type Config struct {
	DatabaseURL string
	// NATSURL is empty when paypipe runs its own embedded nats-server.
	NATSURL         string
	DataDir         string
	HTTPAddr        string
	RelayMode       outbox.PublishMode
	OutboxRetention time.Duration
	InboxRetention  time.Duration
	DuplicateWindow time.Duration
	LogLevel        slog.Level
	// LogLevelSet reports whether PAYPIPE_LOG_LEVEL was given, so commands
	// with their own quieter default (demo) know whether to apply it.
	LogLevelSet bool
	// PSPURL is empty when paypipe runs the PSP simulator in-process.
	PSPURL            string
	PSPAPIKey         string
	PSPWebhookSecrets []string
	PSPSimAddr        string
	// PSPFeeBPS is the PSP's contracted fee per charge, in basis points.
	PSPFeeBPS int64
	// PayoutSchedule and ReconAt are checked by the payout and reconciler
	// services, which own their syntax; "off" disables either loop.
	PayoutSchedule string
	ReconAt        string
	ReconGraceDays int
	// ReconReportDir defaults to DataDir/recon.
	ReconReportDir  string
	ReconChunkLines int64
	// PayoutResolveAfter is when the payout resolver first asks the PSP
	// about a sent payout whose webhook has not come.
	PayoutResolveAfter time.Duration
}

// EmbeddedPSP reports whether paypipe runs the PSP simulator itself.
func (c Config) EmbeddedPSP() bool { return c.PSPURL == "" }

// Embedded reports whether paypipe runs its own nats-server.
func (c Config) Embedded() bool { return c.NATSURL == "" }

// FromEnv builds a Config from the variables getenv returns (os.Getenv in
// production). All malformed values are reported together.
func FromEnv(getenv func(string) string) (Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	c := Config{
		DatabaseURL:     get(EnvDatabaseURL),
		NATSURL:         get(EnvNATSURL),
		DataDir:         DefaultDataDir,
		HTTPAddr:        DefaultHTTPAddr,
		OutboxRetention: DefaultOutboxRetention,
		InboxRetention:  DefaultInboxRetention,
		DuplicateWindow: DefaultDuplicateWindow,
		LogLevel:        slog.LevelInfo,
		PSPURL:          get(EnvPSPURL),
		PSPAPIKey:       get(EnvPSPAPIKey),
		PSPSimAddr:      DefaultPSPSimAddr,
		PSPFeeBPS:       DefaultPSPFeeBPS,
		PayoutSchedule:  DefaultPayoutSchedule,
		ReconAt:         DefaultReconAt,
		ReconGraceDays:  DefaultReconGraceDays,

		ReconChunkLines:    DefaultReconChunkLines,
		PayoutResolveAfter: DefaultPayoutResolve,
	}
	var errs []error
	bad := func(k, v, why string) { errs = append(errs, fmt.Errorf("%s=%q: %s", k, v, why)) }

	if v := get(EnvDataDir); v != "" {
		c.DataDir = v
	}
	if v := get(EnvHTTPAddr); v != "" {
		if _, port, err := net.SplitHostPort(v); err != nil {
			bad(EnvHTTPAddr, v, "want host:port, e.g. 127.0.0.1:8080 or :8080")
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(EnvHTTPAddr, v, "port must be a number from 0 to 65535")
		} else {
			c.HTTPAddr = v
		}
	}

	// Atomic batches pay off only when the server fsyncs every write, which
	// the embedded server always does; for an external server we cannot see
	// its sync_interval (or its version), and async works everywhere.
	c.RelayMode = outbox.PublishAsync
	if c.Embedded() {
		c.RelayMode = outbox.PublishAtomicBatch
	}
	if v := get(EnvRelayMode); v != "" {
		switch strings.ToLower(v) {
		case "async":
			c.RelayMode = outbox.PublishAsync
		case "atomic-batch":
			c.RelayMode = outbox.PublishAtomicBatch
		default:
			bad(EnvRelayMode, v, "want async or atomic-batch")
		}
	}

	durations := []struct {
		key      string
		dst      *time.Duration
		min, max time.Duration
		why      string
	}{
		{EnvOutboxRetention, &c.OutboxRetention, time.Minute, 0, ""},
		{EnvInboxRetention, &c.InboxRetention, MinInboxRetention, 0,
			"an inbox row must outlive the stream's MaxAge (7d) plus the DLQ's (30d), or a late copy of a message is applied twice"},
		{EnvDuplicateWindow, &c.DuplicateWindow, time.Second, StreamMaxAge,
			"the window cannot exceed the stream MaxAge (7d)"},
		{EnvPayoutResolve, &c.PayoutResolveAfter, time.Second, 24 * time.Hour, ""},
	}
	for _, d := range durations {
		v := get(d.key)
		if v == "" {
			continue
		}
		dur, err := ParseDuration(v)
		switch {
		case err != nil:
			bad(d.key, v, err.Error())
		case dur < d.min:
			bad(d.key, v, fmt.Sprintf("must be at least %s%s", FormatDuration(d.min), because(d.why)))
		case d.max > 0 && dur > d.max:
			bad(d.key, v, fmt.Sprintf("must be at most %s%s", FormatDuration(d.max), because(d.why)))
		default:
			*d.dst = dur
		}
	}

	if v := get(EnvPSPSimAddr); v != "" {
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(EnvPSPSimAddr, v, "want host:port")
		} else {
			c.PSPSimAddr = v
		}
	}
	if v := get(EnvPSPSecrets); v != "" {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if len(s) < 16 {
				bad(EnvPSPSecrets, "(redacted)", "each secret needs at least 16 characters")
				break
			}
			c.PSPWebhookSecrets = append(c.PSPWebhookSecrets, s)
		}
	}
	if c.PSPURL != "" {
		if u, err := url.Parse(c.PSPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(EnvPSPURL, c.PSPURL, "want an absolute http(s) URL")
		}
		if c.PSPAPIKey == "" {
			bad(EnvPSPAPIKey, "", "required when "+EnvPSPURL+" is set")
		}
		if len(c.PSPWebhookSecrets) == 0 {
			bad(EnvPSPSecrets, "", "required when "+EnvPSPURL+" is set")
		}
	}
	ints := []struct {
		key      string
		dst      *int64
		min, max int64
	}{
		{EnvPSPFeeBPS, &c.PSPFeeBPS, 0, 10000},
		{EnvReconChunkLines, &c.ReconChunkLines, 1, 5000},
	}
	for _, n := range ints {
		if v := get(n.key); v != "" {
			i, err := strconv.ParseInt(v, 10, 64)
			if err != nil || i < n.min || i > n.max {
				bad(n.key, v, fmt.Sprintf("want a whole number from %d to %d", n.min, n.max))
				continue
			}
			*n.dst = i
		}
	}
	if v := get(EnvReconGraceDays); v != "" {
		if i, err := strconv.Atoi(v); err != nil || i < 0 || i > 30 {
			bad(EnvReconGraceDays, v, "want a whole number of days from 0 to 30")
		} else {
			c.ReconGraceDays = i
		}
	}
	if v := get(EnvPayoutSchedule); v != "" {
		c.PayoutSchedule = v
	}
	if v := get(EnvReconAt); v != "" {
		c.ReconAt = v
	}
	c.ReconReportDir = filepath.Join(c.DataDir, "recon")
	if v := get(EnvReconReportDir); v != "" {
		c.ReconReportDir = v
	}
	if v := get(EnvLogLevel); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			bad(EnvLogLevel, v, "want debug, info, warn or error")
		} else {
			c.LogLevelSet = true
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return c, nil
}

func because(why string) string {
	if why == "" {
		return ""
	}
	return ": " + why
}

// ErrNoDatabase is returned by RequireDatabase.
var ErrNoDatabase = errors.New("config: " + EnvDatabaseURL + " is not set (e.g. export DATABASE_URL=$(bash scripts/pg.sh url))")

// RequireDatabase fails when DATABASE_URL is missing. Only commands that need
// the database call it, so `paypipe --help` works without one.
func (c Config) RequireDatabase() error {
	if c.DatabaseURL == "" {
		return ErrNoDatabase
	}
	return nil
}

// ParseDuration is time.ParseDuration plus a whole-day form ("40d"), because
// retentions are naturally counted in days. Negative values are refused.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 {
			return 0, errors.New("want a duration such as 90s, 24h or 40d")
		}
		if n > int64(1<<63-1)/int64(24*time.Hour) {
			return 0, errors.New("duration too long")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want a duration such as 90s, 24h or 40d")
	}
	if d < 0 {
		return 0, errors.New("duration must not be negative")
	}
	return d, nil
}

// FormatDuration prints whole days as "40d" and anything else as Go does.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
