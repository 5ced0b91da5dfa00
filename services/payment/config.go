package payment

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config configures a Service. Zero values take the defaults documented on
// each field; New rejects values that are present but unusable.
type Config struct {
	// IdempotencyTTL is how long an Idempotency-Key is remembered after its
	// first use: default 24h (what Stripe keeps, and no shorter than the
	// PSP's own key retention). A retry after it is a new request.
	IdempotencyTTL time.Duration
	// ReturnURLAllowedHosts, when non-empty, is the exact list of host names
	// (no port, lower case) a hosted checkout's return_url may point at, so
	// that paypipe cannot be used as an open redirect (RELIABILITY S10).
	// Empty allows any https host.
	ReturnURLAllowedHosts []string
	// RequestTimeout bounds the database work of one API request: default 10s.
	RequestTimeout time.Duration
	// SweepInterval is how often expired idempotency keys are deleted:
	// default 1 minute.
	SweepInterval time.Duration
	// SweepBatch is the most keys one DELETE removes: default 1000, at most
	// 10,000. A pass runs at most sweepMaxBatches of them.
	SweepBatch int
	// Webhook configures the PSP webhook receiver (POST /v1/psp/webhooks).
	// Without secrets every webhook is refused: nothing unauthenticated is
	// ever applied.
	Webhook WebhookConfig
}

// Defaults and bounds of Config.
const (
	DefaultIdempotencyTTL = 24 * time.Hour
	DefaultRequestTimeout = 10 * time.Second
	DefaultSweepInterval  = time.Minute
	DefaultSweepBatch     = 1000
	maxSweepBatch         = 10_000
)

// withDefaults fills zero values and validates the rest.
func (c Config) withDefaults() (Config, error) {
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.SweepBatch == 0 {
		c.SweepBatch = DefaultSweepBatch
	}
	var errs []error
	if c.IdempotencyTTL < time.Minute {
		errs = append(errs, fmt.Errorf("IdempotencyTTL %s: want at least 1m", c.IdempotencyTTL))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("RequestTimeout %s: want a positive duration", c.RequestTimeout))
	}
	if c.SweepInterval < 0 {
		errs = append(errs, fmt.Errorf("SweepInterval %s: want a positive duration", c.SweepInterval))
	}
	if c.SweepBatch < 0 || c.SweepBatch > maxSweepBatch {
		errs = append(errs, fmt.Errorf("SweepBatch %d: want 1 to %d", c.SweepBatch, maxSweepBatch))
	}
	hosts := make([]string, 0, len(c.ReturnURLAllowedHosts))
	for _, h := range c.ReturnURLAllowedHosts {
		if h == "" || h != strings.ToLower(h) || strings.ContainsAny(h, ":/@ ") {
			errs = append(errs, fmt.Errorf("ReturnURLAllowedHosts: %q: want a lower-case host name without port", h))
			continue
		}
		hosts = append(hosts, h)
	}
	c.ReturnURLAllowedHosts = hosts
	c.Webhook = c.Webhook.withDefaults()
	for _, sec := range c.Webhook.Secrets {
		if len(sec) < 16 {
			errs = append(errs, errors.New("Webhook.Secrets: each secret needs at least 16 characters"))
			break
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("payment: config: %w", errors.Join(errs...))
	}
	return c, nil
}
