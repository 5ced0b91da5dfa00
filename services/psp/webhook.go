package psp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Webhook event types sent by the PSP.
const (
	EventPaymentSucceeded  = "payment.succeeded"
	EventPaymentFailed     = "payment.failed"
	EventPaymentProcessing = "payment.processing"
)

// Event is a webhook's body.
type Event struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Created time.Time `json:"created"`
	Data    Payment   `json:"data"`
}

// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">".
// During a secret rotation the PSP sends one v1 per active secret.
const SignatureHeader = "PSP-Signature"

// DefaultTolerance is how far a webhook's timestamp may be from now.
const DefaultTolerance = 300 * time.Second

// Errors of VerifySignature; all mean "reject with 400".
var (
	ErrNoSignature        = errors.New("psp webhook: missing signature")
	ErrBadSignature       = errors.New("psp webhook: signature does not match")
	ErrStaleSignature     = errors.New("psp webhook: timestamp outside tolerance")
	ErrMalformedSignature = errors.New("psp webhook: malformed signature header")
)

// Sign returns the signature header value for body at time t with each secret.
func Sign(body []byte, t time.Time, secrets ...string) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	parts := []string{"t=" + ts}
	for _, s := range secrets {
		parts = append(parts, "v1="+hex.EncodeToString(mac(s, ts, body)))
	}
	return strings.Join(parts, ",")
}

func mac(secret, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte("."))
	h.Write(body)
	return h.Sum(nil)
}

// maxSignatures bounds the work an attacker can make us do per request.
const maxSignatures = 8

// VerifySignature checks header against body with any of secrets (two are
// active during a rotation), in constant time per comparison, and rejects a
// timestamp further than tolerance from now in either direction.
func VerifySignature(header string, body []byte, secrets []string, now time.Time, tolerance time.Duration) error {
	if header == "" {
		return ErrNoSignature
	}
	if len(header) > 4096 {
		return ErrMalformedSignature
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformedSignature
		}
		switch k {
		case "t":
			if ts != "" {
				return ErrMalformedSignature
			}
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return ErrMalformedSignature
			}
			if len(sigs) == maxSignatures {
				return ErrMalformedSignature
			}
			sigs = append(sigs, b)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return ErrMalformedSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrMalformedSignature
	}
	skew := now.Sub(time.Unix(sec, 0))
	if skew > tolerance || skew < -tolerance {
		return fmt.Errorf("%w: %s", ErrStaleSignature, skew.Round(time.Second))
	}
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		want := mac(secret, ts, body)
		for _, s := range sigs {
			if hmac.Equal(s, want) {
				return nil
			}
		}
	}
	return ErrBadSignature
}
