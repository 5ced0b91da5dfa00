package payout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/services/psp"
)

// WebhookPath is where the PSP posts payout webhooks.
const WebhookPath = "/v1/psp/payout_webhooks"

// Handler serves POST WebhookPath. Mount it on the public HTTP server.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+WebhookPath, s.serveWebhook)
	return mux
}

// problem writes an RFC 9457 problem document.
func problem(w http.ResponseWriter, status int, code, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "https://paypipe.dev/problems/" + code, "title": title, "status": status, "detail": detail,
	})
}

// serveWebhook authenticates a PSP payout webhook and applies it at most
// once:
//
//   - signature missing, wrong, malformed or outside ±WebhookTolerance:
//     400, nothing recorded;
//   - an event id received before: 200, no effect;
//   - an event type other than payout.paid and payout.failed: 200, ignored;
//   - a payout we do not hold, or a report disagreeing with it (amount,
//     currency, PSP id, a contradicting final status): 200, quarantined
//     with the evidence, not applied;
//   - the database unavailable: 503 with Retry-After, so the PSP retries.
//
// The receipt, the payout's change and its events commit together.
func (s *Service) serveWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxWebhookBytes))
	if err != nil {
		problem(w, http.StatusRequestEntityTooLarge, "webhook-too-large", "Webhook body too large", err.Error())
		return
	}
	if err := psp.VerifySignature(r.Header.Get(psp.SignatureHeader), body, s.cfg.WebhookSecrets, s.now(), s.cfg.WebhookTolerance); err != nil {
		s.metrics.webhooks.WithLabelValues("bad_signature").Inc()
		s.log.Warn("PSP payout webhook rejected", "err", err)
		problem(w, http.StatusBadRequest, "webhook-signature", "Webhook signature invalid", err.Error())
		return
	}
	var ev psp.PayoutEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || ev.Type == "" || len(ev.ID) > 255 {
		s.metrics.webhooks.WithLabelValues("malformed").Inc()
		problem(w, http.StatusBadRequest, "webhook-malformed", "Webhook malformed", "body is not a PSP payout event with an id and a type")
		return
	}
	outcome, duplicate, err := s.receiveWebhook(r.Context(), ev, body)
	if err != nil {
		s.metrics.webhooks.WithLabelValues("error").Inc()
		s.log.Error("PSP payout webhook not recorded; the PSP will retry", "event_id", ev.ID, "err", err)
		problem(w, http.StatusServiceUnavailable, "service-unavailable", "Service unavailable", "try again later")
		return
	}
	if duplicate {
		outcome = "duplicate"
	}
	s.metrics.webhooks.WithLabelValues(outcome).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]string{"received": ev.ID, "outcome": outcome})
}

func (s *Service) receiveWebhook(ctx context.Context, ev psp.PayoutEvent, body []byte) (outcome string, duplicate bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		outcome, duplicate = "", false
		tag, err := tx.Exec(ctx, `INSERT INTO payout.webhook_receipts (event_id, event_type, psp_payout_id, outcome)
VALUES ($1, $2, nullif($3, ''), 'applied') ON CONFLICT (event_id) DO NOTHING`, ev.ID, ev.Type, ev.Data.ID)
		if err != nil {
			return fmt.Errorf("payout: webhook receipt: %w", err)
		}
		if tag.RowsAffected() == 0 {
			duplicate = true
			return nil
		}
		var reason string
		outcome, reason, err = s.applyWebhook(ctx, tx, ev)
		if err != nil {
			return err
		}
		if outcome == outcomeQuarantined {
			s.log.Error("PSP payout webhook quarantined", "event_id", ev.ID, "payout_id", ev.Data.MerchantReference, "reason", reason)
			if err := quarantine(ctx, tx, "webhook", ev.ID, ev.Data.MerchantReference, reason, body); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE payout.webhook_receipts SET outcome = $2 WHERE event_id = $1`, ev.ID, outcome)
		return err
	})
	if err == nil && outcome == outcomeApplied {
		s.wakeRelay()
	}
	return outcome, duplicate, err
}

func (s *Service) applyWebhook(ctx context.Context, tx pgx.Tx, ev psp.PayoutEvent) (outcome, reason string, err error) {
	switch ev.Type {
	case psp.EventPayoutPaid, psp.EventPayoutFailed:
	default:
		return outcomeIgnored, "", nil
	}
	// The event type is what the PSP announces; the payout's status in it
	// must agree, or the report is not trusted.
	if want := map[string]string{psp.EventPayoutPaid: psp.PayoutPaid, psp.EventPayoutFailed: psp.PayoutFailed}[ev.Type]; ev.Data.Status != want {
		return outcomeQuarantined, fmt.Sprintf("event %s carries payout status %q", ev.Type, ev.Data.Status), nil
	}
	id, perr := uuid.Parse(ev.Data.MerchantReference)
	if perr != nil {
		return outcomeQuarantined, fmt.Sprintf("merchant reference %q is not a payout id", ev.Data.MerchantReference), nil
	}
	p, err := lockPayout(ctx, tx, id)
	if errors.Is(err, ErrNotFound) {
		return outcomeQuarantined, "no such payout: " + id.String(), nil
	}
	if err != nil {
		return "", "", err
	}
	return s.applyReport(ctx, tx, &p, ev.Data, "webhook:"+ev.ID)
}
