package pspsim

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/paypipe/paypipe/outbox/retry"
)

// Config configures a Server. Zero values take the defaults documented on
// each field; New rejects what is present but invalid.
type Config struct {
	// APIKey authenticates /v1/* (Authorization: Bearer <APIKey>). Required.
	APIKey string
	// AdminKey authenticates /admin/*. Empty disables the admin endpoints.
	AdminKey string
	// PublicURL is where buyers reach this server: hosted payment pages are
	// <PublicURL>/pay/<token>. Default http://127.0.0.1:8090.
	PublicURL string

	// WebhookURL receives the signed payment webhooks. Required.
	WebhookURL string
	// PayoutWebhookURL receives the signed payout webhooks (payout.paid,
	// payout.failed). Default: WebhookURL with its path replaced by
	// /v1/psp/payout_webhooks.
	PayoutWebhookURL string
	// WebhookSecrets sign every webhook, one v1 signature per secret (two
	// during a rotation). At least one is required.
	WebhookSecrets []string
	// WebhookBackoff spaces a failed event's attempts. Zero: the default,
	// exponential from 5s doubling, capped at 1h, jitter 0.1. It must not
	// give up (MaxAttempts, MaxElapsed): WebhookMaxAge is the cancel.
	WebhookBackoff retry.Policy
	// WebhookMaxAge is how long after its creation an event is retried
	// before it is marked dead: default 72h, as Stripe.
	WebhookMaxAge time.Duration
	// WebhookTimeout bounds one delivery attempt: default 5s.
	WebhookTimeout time.Duration
	// WebhookConcurrency bounds deliveries in flight: default 8.
	WebhookConcurrency int
	// WebhookBatchSize is the most events one sender pass claims: default 100.
	WebhookBatchSize int
	// PollInterval is how often an idle sender looks for due events:
	// default 100ms. Commits wake it at once; polling is what it relies on.
	PollInterval time.Duration
	// DelayedWebhook holds back the final webhook of pm_card_delayed_webhook
	// (card 4000000000000077): default 30s.
	DelayedWebhook time.Duration

	// HostedTTL is how long a hosted payment may stay unpaid before it fails
	// with failure_code "expired": default 1h.
	HostedTTL time.Duration
	// ExpiryInterval is how often unpaid payments are checked: default 1s.
	ExpiryInterval time.Duration
	// ExpiryBatchSize bounds the payments one expiry pass fails: default 100.
	ExpiryBatchSize int

	// FeeBPS is the processing fee of every charge in basis points, rounded
	// half up (money.Fee) and fixed on the charge when it happens: default
	// 290 (2.90 %), at most 10000. NoFee charges no fee (0 bps).
	FeeBPS int
	NoFee  bool

	// PayoutDelay is how long a payout stays pending before it is paid (or
	// fails): default 2s.
	PayoutDelay time.Duration
	// PayoutInterval is how often due payouts are looked for: default 100ms.
	PayoutInterval time.Duration
	// PayoutBatchSize bounds the payouts one pass settles: default 100.
	PayoutBatchSize int

	// Seed picks the line of a seeded settlement discrepancy posted without
	// a psp_reference (and fabricates unknown references): the same seed
	// and the same movements give the same pick.
	Seed uint64

	// Faults are active from the start; POST /admin/faults replaces them.
	Faults Faults
}

// payoutWebhookPath replaces WebhookURL's path when PayoutWebhookURL is empty.
const payoutWebhookPath = "/v1/psp/payout_webhooks"

// defaultFeeBPS is the contracted processing fee (docs/settlement-file.md).
const defaultFeeBPS = 290

// Limits on configuration and requests.
const (
	maxBatch        = 1000
	maxConcurrency  = 256
	maxSecrets      = 8 // psp.VerifySignature reads at most 8 signatures
	defaultTTL      = time.Hour
	defaultMaxAge   = 72 * time.Hour
	defaultPublic   = "http://127.0.0.1:8090"
	maxHangFor      = 5 * time.Minute
	maxLatency      = time.Minute
	maxFaultRate    = 1.0
	webhookUA       = "paypipe-pspsim/1 (+https://github.com/paypipe/paypipe)"
	maxWebhookReply = 64 << 10
)

func (c Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.APIKey == "" {
		bad("APIKey is required")
	}
	if c.AdminKey != "" && c.AdminKey == c.APIKey {
		bad("AdminKey must differ from APIKey")
	}
	if c.PublicURL == "" {
		c.PublicURL = defaultPublic
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		bad("PublicURL %q: want an absolute http(s) URL without query", c.PublicURL)
	} else {
		u.Path = trimSlash(u.Path)
		c.PublicURL = u.String()
	}
	if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("WebhookURL %q: want an absolute http(s) URL", c.WebhookURL)
	}
	if c.PayoutWebhookURL == "" {
		if u, err := url.Parse(c.WebhookURL); err == nil {
			u.Path, u.RawPath, u.RawQuery, u.Fragment = payoutWebhookPath, "", "", ""
			c.PayoutWebhookURL = u.String()
		}
	}
	if u, err := url.Parse(c.PayoutWebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("PayoutWebhookURL %q: want an absolute http(s) URL", c.PayoutWebhookURL)
	}
	switch {
	case c.FeeBPS < 0 || c.FeeBPS > 10000:
		bad("FeeBPS %d: want 0 (default %d) to 10000", c.FeeBPS, defaultFeeBPS)
	case c.NoFee && c.FeeBPS != 0:
		bad("NoFee with FeeBPS %d: choose one", c.FeeBPS)
	case c.NoFee:
	case c.FeeBPS == 0:
		c.FeeBPS = defaultFeeBPS
	}
	if len(c.WebhookSecrets) == 0 || len(c.WebhookSecrets) > maxSecrets {
		bad("WebhookSecrets: want 1 to %d secrets, have %d", maxSecrets, len(c.WebhookSecrets))
	}
	for i, s := range c.WebhookSecrets {
		if len(s) < 16 {
			bad("WebhookSecrets[%d]: want at least 16 characters", i)
		}
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"WebhookMaxAge", &c.WebhookMaxAge, defaultMaxAge},
		{"WebhookTimeout", &c.WebhookTimeout, 5 * time.Second},
		{"PollInterval", &c.PollInterval, 100 * time.Millisecond},
		{"DelayedWebhook", &c.DelayedWebhook, 30 * time.Second},
		{"HostedTTL", &c.HostedTTL, defaultTTL},
		{"ExpiryInterval", &c.ExpiryInterval, time.Second},
		{"PayoutDelay", &c.PayoutDelay, 2 * time.Second},
		{"PayoutInterval", &c.PayoutInterval, 100 * time.Millisecond},
	}
	for _, d := range durations {
		switch {
		case *d.d < 0:
			bad("%s %s is negative", d.name, *d.d)
		case *d.d == 0:
			*d.d = d.def
		}
	}
	if c.WebhookBackoff == (retry.Policy{}) {
		c.WebhookBackoff = retry.Policy{Strategy: retry.Exponential, Initial: 5 * time.Second, Max: time.Hour, Jitter: 0.1}
	}
	if err := c.WebhookBackoff.Validate(); err != nil {
		bad("WebhookBackoff: %w", err)
	}
	if c.WebhookBackoff.MaxAttempts != 0 || c.WebhookBackoff.MaxElapsed != 0 {
		bad("WebhookBackoff must not give up (MaxAttempts, MaxElapsed): WebhookMaxAge is the cancel")
	}
	counts := []struct {
		name     string
		n        *int
		def, max int
	}{
		{"WebhookConcurrency", &c.WebhookConcurrency, 8, maxConcurrency},
		{"WebhookBatchSize", &c.WebhookBatchSize, 100, maxBatch},
		{"ExpiryBatchSize", &c.ExpiryBatchSize, 100, maxBatch},
		{"PayoutBatchSize", &c.PayoutBatchSize, 100, maxBatch},
	}
	for _, n := range counts {
		switch {
		case *n.n < 0 || *n.n > n.max:
			bad("%s %d: want 0 (default %d) to %d", n.name, *n.n, n.def, n.max)
		case *n.n == 0:
			*n.n = n.def
		}
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("pspsim: config: %w", errors.Join(errs...))
	}
	return c, nil
}

func trimSlash(p string) string {
	for len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}
