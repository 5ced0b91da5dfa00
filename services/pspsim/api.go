package pspsim

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/paypipe/paypipe/contracts/money"
)

// Request limits.
const (
	maxKeyLen         = 255
	maxReferenceLen   = 255
	maxDescriptionLen = 1000
	maxURLLen         = 2048
	maxListLimit      = 100
	defaultListLimit  = 10
)

// createRequest is the body of POST /v1/payments.
type createRequest struct {
	AmountMinor       int64  `json:"amount_minor"`
	Currency          string `json:"currency"`
	MerchantReference string `json:"merchant_reference"`
	Description       string `json:"description"`
	ReturnURL         string `json:"return_url"`
	Confirm           bool   `json:"confirm"`
	PaymentMethod     string `json:"payment_method"`
}

func (r createRequest) validate() error {
	if err := money.ValidAmount(r.AmountMinor); err != nil {
		return invalidParam("amount_minor", "amount_minor %d: want 1 to %d minor units", r.AmountMinor, money.MaxAmount)
	}
	if _, err := money.ParseCurrency(r.Currency); err != nil {
		return invalidParam("currency", "%v", err)
	}
	if err := checkText(r.MerchantReference, maxReferenceLen, true); err != "" {
		return invalidParam("merchant_reference", "merchant_reference %s", err)
	}
	if err := checkText(r.Description, maxDescriptionLen, false); err != "" {
		return invalidParam("description", "description %s", err)
	}
	if r.ReturnURL != "" || !r.Confirm {
		if err := checkReturnURL(r.ReturnURL); err != "" {
			return invalidParam("return_url", "return_url %s", err)
		}
	}
	switch {
	case r.Confirm && r.PaymentMethod == "":
		return invalidParam("payment_method", "payment_method is required with confirm")
	case !r.Confirm && r.PaymentMethod != "":
		return invalidParam("payment_method", "payment_method needs confirm: true (or use POST /v1/payments/{id}/confirm)")
	case r.Confirm:
		if _, ok := methodOutcome(r.PaymentMethod); !ok {
			return invalidParam("payment_method", "unknown test payment method %q", r.PaymentMethod)
		}
	}
	return nil
}

// checkText returns why s is unacceptable, or "".
func checkText(s string, maxLen int, required bool) string {
	switch {
	case required && strings.TrimSpace(s) == "":
		return "is required"
	case len(s) > maxLen:
		return "is longer than " + strconv.Itoa(maxLen) + " bytes"
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "contains control characters"
	}
	return ""
}

func checkReturnURL(s string) string {
	if s == "" {
		return "is required for a hosted payment (confirm: false)"
	}
	if len(s) > maxURLLen {
		return "is longer than " + strconv.Itoa(maxURLLen) + " bytes"
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "must be an absolute http(s) URL without credentials"
	}
	return ""
}

// fingerprint identifies a request for its idempotency key: the endpoint
// and the normalised body, so a key reused elsewhere or with other
// parameters is caught, and whitespace or field order do not matter.
func fingerprint(endpoint string, body any) []byte {
	b, _ := json.Marshal(body) // plain structs of strings and numbers
	h := sha256.New()
	h.Write([]byte(endpoint))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil)
}

func idempotencyKey(r *http.Request) (string, error) {
	k := r.Header.Get("Idempotency-Key")
	switch {
	case k == "":
		return "", problemf(codeIdempotencyKeyMissing, "send an Idempotency-Key header (e.g. a UUID) with every POST")
	case len(k) > maxKeyLen:
		return "", problemf(codeIdempotencyKeyInvalid, "the Idempotency-Key is longer than %d characters", maxKeyLen)
	case checkText(k, maxKeyLen, true) != "":
		return "", problemf(codeIdempotencyKeyInvalid, "the Idempotency-Key must be printable text")
	}
	return k, nil
}

// workTimeout bounds the database work of one request.
const workTimeout = 30 * time.Second

// workContext is the context of a request's transaction. It does not end
// when the caller hangs up: like a real PSP, the simulator finishes what it
// started, which is exactly why a caller's timeout is an unknown outcome.
func workContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), workTimeout)
}

// beforeWork applies the faults that strike before anything is stored:
// latency, then a 500.
func (s *Server) beforeWork(ctx context.Context, k requestKind) error {
	if !sleepCtx(ctx, s.faults.latency()) {
		return ctx.Err()
	}
	if s.faults.failBefore(k) {
		return problemf(codeSimulatedFailure, "simulated failure before the %s: nothing was done", k)
	}
	return nil
}

// respondCommitted writes the answer to a request that committed new state,
// unless a fault hides it: a 500, or a response held for longer than the
// client will wait. Replays are never hidden, so a retry always learns the
// outcome.
func (s *Server) respondCommitted(w http.ResponseWriter, r *http.Request, status int, p payment, replayed bool) {
	s.respond(w, r, status, s.view(p), replayed, kindCharge, "payment_id", p.ID)
}

// respond writes body, the answer to a request that committed new state (or
// a replay of one), unless an after-commit fault of kind k hides it. id names the object
// in the fault's log line.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, status int, body any, replayed bool,
	k requestKind, idKey, id string) {
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, http.StatusOK, body)
		return
	}
	fail, hang := s.faults.afterCommit(k)
	if fail {
		s.log.Info("fault: 500 after commit", idKey, id)
		s.writeError(w, r, problemf(codeSimulatedFailure, "simulated failure after the commit: retry with the same Idempotency-Key"))
		return
	}
	if hang > 0 {
		s.log.Info("fault: holding the response", idKey, id, "for", hang)
		if !sleepCtx(r.Context(), hang) {
			return // the client gave up
		}
	}
	writeJSON(w, status, body)
}

// decodeCreate reads what every create endpoint (payments, refunds,
// payouts) starts with: an Idempotency-Key and a JSON body of type T that
// validates. On a problem it has answered with it and returns ok false.
func decodeCreate[T interface{ validate() error }](s *Server, w http.ResponseWriter, r *http.Request) (key string, req T, ok bool) {
	key, err := idempotencyKey(r)
	if err == nil {
		err = decodeJSON(w, r, &req)
	}
	if err == nil {
		err = req.validate()
	}
	if err != nil {
		s.writeError(w, r, err)
		return "", req, false
	}
	return key, req, true
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	key, req, ok := decodeCreate[createRequest](s, w, r)
	if !ok {
		return
	}
	if err := s.beforeWork(r.Context(), kindCharge); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := workContext(r)
	defer cancel()
	p, replayed, err := s.create(ctx, key, fingerprint("POST /v1/payments", req), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !replayed {
		s.log.Info("payment created", "payment_id", p.ID, "merchant_reference", p.Reference, "status", p.Status)
	}
	s.respondCommitted(w, r, http.StatusCreated, p, replayed)
}

type confirmRequest struct {
	PaymentMethod string `json:"payment_method"`
}

func (s *Server) handleConfirm(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	key, err := idempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req confirmRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	o, ok := methodOutcome(req.PaymentMethod)
	if !ok {
		s.writeError(w, r, invalidParam("payment_method", "unknown test payment method %q", req.PaymentMethod))
		return
	}
	if err := s.beforeWork(r.Context(), kindCharge); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := workContext(r)
	defer cancel()
	p, replayed, err := s.confirm(ctx, key, fingerprint("POST /v1/payments/"+id+"/confirm", req), id, o)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respondCommitted(w, r, http.StatusOK, p, replayed)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	p, err := getPayment(r.Context(), s.pool, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.view(p))
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	lp, err := parseListParams(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.list(r.Context(), lp)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func parseListParams(q url.Values) (listParams, error) {
	lp := listParams{limit: defaultListLimit}
	for k, vs := range q {
		if len(vs) != 1 {
			return lp, invalidParam(k, "%s: give it once", k)
		}
		v := vs[0]
		switch k {
		case "merchant_reference":
			if msg := checkText(v, maxReferenceLen, true); msg != "" {
				return lp, invalidParam(k, "merchant_reference %s", msg)
			}
			lp.reference = v
		case "created_after":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return lp, invalidParam(k, "created_after: want an RFC 3339 time")
			}
			lp.createdAfter = &t
		case "starting_after":
			if msg := checkText(v, maxReferenceLen, true); msg != "" {
				return lp, invalidParam(k, "starting_after %s", msg)
			}
			lp.startingAfter = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxListLimit {
				return lp, invalidParam(k, "limit: want 1 to %d", maxListLimit)
			}
			lp.limit = n
		default:
			return lp, invalidParam(k, "unknown parameter %q", k)
		}
	}
	return lp, nil
}
