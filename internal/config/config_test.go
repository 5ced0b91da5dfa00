package config

import (
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paypipe/paypipe/outbox"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := FromEnv(env())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		DataDir:         ".data",
		HTTPAddr:        "127.0.0.1:8080",
		RelayMode:       outbox.PublishAtomicBatch,
		OutboxRetention: 24 * time.Hour,
		InboxRetention:  40 * 24 * time.Hour,
		DuplicateWindow: 30 * time.Minute,
		LogLevel:        slog.LevelInfo,
		PSPSimAddr:      "127.0.0.1:8090",
		PSPFeeBPS:       290,
		PayoutSchedule:  "daily@02:00",
		ReconAt:         "02:30",
		ReconGraceDays:  1,
		ReconReportDir:  ".data/recon",

		ReconChunkLines:    5000,
		PayoutResolveAfter: 10 * time.Minute,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if !c.Embedded() {
		t.Error("no NATS_URL must mean embedded")
	}
	if !errors.Is(c.RequireDatabase(), ErrNoDatabase) {
		t.Error("RequireDatabase without DATABASE_URL must fail")
	}
	if c.InboxRetention < MinInboxRetention {
		t.Error("the default inbox retention must cover stream MaxAge + DLQ MaxAge")
	}
}

func TestExternalNATSDefaultsToAsync(t *testing.T) {
	t.Parallel()
	c, err := FromEnv(env(EnvNATSURL, "nats://127.0.0.1:4222"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Embedded() || c.RelayMode != outbox.PublishAsync {
		t.Fatalf("external NATS: embedded=%v mode=%v, want false/async", c.Embedded(), c.RelayMode)
	}
}

func TestValues(t *testing.T) {
	t.Parallel()
	c, err := FromEnv(env(
		EnvDatabaseURL, "postgres://x@localhost/db",
		EnvDataDir, "/var/lib/paypipe",
		EnvHTTPAddr, ":0",
		EnvRelayMode, "ASYNC",
		EnvOutboxRetention, "2h",
		EnvInboxRetention, "60d",
		EnvDuplicateWindow, " 1h ",
		EnvLogLevel, "warn",
		EnvPSPFeeBPS, "150",
		EnvPayoutSchedule, "6h",
		EnvReconAt, "off",
		EnvReconGraceDays, "3",
		EnvReconChunkLines, "100",
		EnvPayoutResolve, "30s",
	))
	if err != nil {
		t.Fatal(err)
	}
	if c.PSPFeeBPS != 150 || c.PayoutSchedule != "6h" || c.ReconAt != "off" || c.ReconGraceDays != 3 ||
		c.ReconReportDir != "/var/lib/paypipe/recon" || c.ReconChunkLines != 100 || c.PayoutResolveAfter != 30*time.Second {
		t.Fatalf("pay-out settings: got %+v", c)
	}
	if c.DataDir != "/var/lib/paypipe" || c.HTTPAddr != ":0" || c.RelayMode != outbox.PublishAsync ||
		c.OutboxRetention != 2*time.Hour || c.InboxRetention != 60*24*time.Hour ||
		c.DuplicateWindow != time.Hour || c.LogLevel != slog.LevelWarn || !c.LogLevelSet {
		t.Fatalf("got %+v", c)
	}
	if err := c.RequireDatabase(); err != nil {
		t.Fatal(err)
	}
}

func TestBadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ key, val, want string }{
		{EnvHTTPAddr, "8080", "host:port"},
		{EnvHTTPAddr, "localhost:http", "port must be a number"},
		{EnvRelayMode, "batch", "async or atomic-batch"},
		{EnvOutboxRetention, "forever", "want a duration"},
		{EnvOutboxRetention, "-1h", "negative"},
		{EnvOutboxRetention, "1s", "at least 1m0s"},
		{EnvInboxRetention, "7d", "at least 37d"},
		{EnvDuplicateWindow, "8d", "at most 7d"},
		{EnvDuplicateWindow, "0s", "at least 1s"},
		{EnvLogLevel, "loud", "debug, info, warn or error"},
		{EnvPSPFeeBPS, "10001", "from 0 to 10000"},
		{EnvPSPFeeBPS, "2.9", "whole number"},
		{EnvReconGraceDays, "-1", "from 0 to 30"},
		{EnvReconChunkLines, "0", "from 1 to 5000"},
		{EnvPayoutResolve, "25h", "at most 1d"},
	} {
		_, err := FromEnv(env(tc.key, tc.val))
		if err == nil {
			t.Errorf("%s=%q: no error", tc.key, tc.val)
			continue
		}
		if !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: error %q does not name the variable and %q", tc.key, tc.val, err, tc.want)
		}
	}
}

func TestAllErrorsReportedTogether(t *testing.T) {
	t.Parallel()
	_, err := FromEnv(env(EnvRelayMode, "x", EnvLogLevel, "y"))
	if err == nil || !strings.Contains(err.Error(), EnvRelayMode) || !strings.Contains(err.Error(), EnvLogLevel) {
		t.Fatalf("want both variables named, got %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"40d": 40 * 24 * time.Hour, "0d": 0, "90s": 90 * time.Second, "1h30m": 90 * time.Minute} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "1.5d", "-1d", "99999999999d", "1w"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q): no error", in)
		}
	}
	if FormatDuration(37*24*time.Hour) != "37d" || FormatDuration(90*time.Minute) != "1h30m0s" {
		t.Error("FormatDuration")
	}
}

func TestPSPConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := FromEnv(env(nil))
	if err != nil || !c.EmbeddedPSP() {
		t.Fatalf("no PSP URL must mean the embedded simulator: %+v %v", c, err)
	}
	if _, err := FromEnv(env(map[string]string{EnvPSPURL: "http://psp.example:8090"})); err == nil ||
		!strings.Contains(err.Error(), EnvPSPAPIKey) || !strings.Contains(err.Error(), EnvPSPSecrets) {
		t.Fatalf("an external PSP without key and secrets: %v", err)
	}
	if _, err := FromEnv(env(map[string]string{EnvPSPSecrets: "short"})); err == nil || strings.Contains(err.Error(), "short") {
		t.Fatalf("short secret must be refused without echoing it: %v", err)
	}
	c, err = FromEnv(env(map[string]string{EnvPSPURL: "https://psp.example", EnvPSPAPIKey: "k",
		EnvPSPSecrets: "0123456789abcdef, fedcba9876543210"}))
	if err != nil || c.EmbeddedPSP() || len(c.PSPWebhookSecrets) != 2 {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := FromEnv(env(map[string]string{EnvPSPURL: "ftp://x", EnvPSPAPIKey: "k", EnvPSPSecrets: "0123456789abcdef"})); err == nil {
		t.Fatal("ftp URL accepted")
	}
}
