package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/services/psp"
)

// WebhookConfig configures the PSP webhook receiver.
type WebhookConfig struct {
	// Secrets verify PSP-Signature; during a rotation both the old and the
	// new secret are listed. At least one is required.
	Secrets []string
	// Tolerance bounds the signature timestamp's distance from now: default 300 s.
	Tolerance time.Duration
	// MaxBodyBytes bounds a webhook body: default 256 KiB.
	MaxBodyBytes int64
}

func (c WebhookConfig) withDefaults() WebhookConfig {
	if c.Tolerance <= 0 {
		c.Tolerance = psp.DefaultTolerance
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 256 << 10
	}
	return c
}

// webhookResult is the receiver's answer, before HTTP encoding.
type webhookResult struct {
	status    int  // HTTP status
	problem   Code // when status >= 400
	detail    string
	outcome   string // applied, no_change, ignored, quarantined
	duplicate bool
}

// receiveWebhook authenticates a PSP webhook and applies it exactly once.
//
//   - Signature missing, wrong, malformed or outside ±Tolerance: 400, nothing
//     read beyond the body.
//   - A replay of an event id already received: 200 with no effect.
//   - Unknown event types: 200, recorded as ignored (the PSP must not retry).
//   - Money or payment id that disagree with the checkout, or a checkout we
//     do not hold: 200, quarantined with the evidence, not applied.
//   - The database unavailable: 503, so the PSP retries later.
//
// The receipt, the state change and the outgoing events commit together.
func (e *eventSide) receiveWebhook(ctx context.Context, pool *pgxpool.Pool, cfg WebhookConfig, header string, body []byte) webhookResult {
	if err := psp.VerifySignature(header, body, cfg.Secrets, e.now(), cfg.Tolerance); err != nil {
		e.log.Warn("PSP webhook rejected", "err", err)
		return webhookResult{status: http.StatusBadRequest, problem: CodeWebhookSignature, detail: err.Error()}
	}
	var ev psp.Event
	// Not strict about unknown fields: PSPs add fields to their events
	// without notice; the signature already proved who sent it.
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || ev.Type == "" || len(ev.ID) > 255 {
		return webhookResult{status: http.StatusBadRequest, problem: CodeWebhookMalformed, detail: "body is not a PSP event with an id and a type"}
	}
	var res webhookResult
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		res = webhookResult{status: http.StatusOK}
		tag, err := tx.Exec(ctx, `INSERT INTO payment.webhook_receipts (event_id, event_type, psp_payment_id, outcome)
VALUES ($1, $2, nullif($3, ''), 'applied') ON CONFLICT (event_id) DO NOTHING`, ev.ID, ev.Type, ev.Data.ID)
		if err != nil {
			return fmt.Errorf("payment: webhook receipt: %w", err)
		}
		if tag.RowsAffected() == 0 {
			res.duplicate = true
			return nil
		}
		res.outcome, res.detail, err = e.applyWebhook(ctx, tx, ev, body)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE payment.webhook_receipts SET outcome = $2 WHERE event_id = $1`, ev.ID, res.outcome)
		return err
	})
	if err != nil {
		e.log.Error("PSP webhook not recorded; the PSP will retry", "event_id", ev.ID, "err", err)
		return webhookResult{status: http.StatusServiceUnavailable, problem: CodeServiceUnavailable, detail: "try again later"}
	}
	e.log.Info("PSP webhook", "event_id", ev.ID, "type", ev.Type, "psp_payment_id", ev.Data.ID,
		"outcome", res.outcome, "duplicate", res.duplicate)
	return res
}

func (e *eventSide) applyWebhook(ctx context.Context, tx pgx.Tx, ev psp.Event, body []byte) (outcome, detail string, err error) {
	switch ev.Type {
	case psp.EventPaymentSucceeded, psp.EventPaymentFailed, psp.EventPaymentProcessing:
	default:
		return outcomeIgnored, "", nil
	}
	checkoutID, perr := uuid.Parse(ev.Data.MerchantReference)
	if perr != nil {
		reason := fmt.Sprintf("merchant reference %q is not a checkout id", ev.Data.MerchantReference)
		return outcomeQuarantined, reason, quarantine(ctx, tx, "webhook", ev.ID, nil, reason, json.RawMessage(body))
	}
	r := pspReport{CheckoutID: checkoutID, PSPPaymentID: ev.Data.ID, PSPStatus: ev.Data.Status,
		AmountMinor: ev.Data.AmountMinor, Currency: ev.Data.Currency, FailureCode: ev.Data.FailureCode, Cause: "webhook:" + ev.ID}
	outcome, reason, err := applyPSPReport(ctx, tx, e.store, r, e.now())
	if errors.Is(err, errCheckoutNotFound) {
		reason = "no such checkout: " + checkoutID.String()
		e.log.Error("PSP webhook quarantined", "event_id", ev.ID, "reason", reason)
		return outcomeQuarantined, reason, quarantine(ctx, tx, "webhook", ev.ID, nil, reason, json.RawMessage(body))
	}
	if err != nil {
		return "", "", err
	}
	if outcome == outcomeQuarantined {
		e.log.Error("PSP webhook quarantined", "event_id", ev.ID, "checkout_id", checkoutID, "reason", reason)
		return outcome, reason, quarantine(ctx, tx, "webhook", ev.ID, &checkoutID, reason, json.RawMessage(body))
	}
	return outcome, "", nil
}
