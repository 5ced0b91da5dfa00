package pspsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
)

// Error codes of the API. Each maps to one HTTP status in problems; the
// problem body (RFC 9457) carries the code, which psp.HTTPClient copies into
// psp.Error.Code.
const (
	codeInvalidRequest        = "invalid_request"
	codeIdempotencyKeyMissing = "idempotency_key_missing"
	codeIdempotencyKeyInvalid = "idempotency_key_invalid"
	codeUnexpectedState       = "payment_unexpected_state"
	codeUnauthorized          = "unauthorized"
	codeNotFound              = "not_found"
	codeDuplicateReference    = "duplicate_reference"
	codeIdempotencyKeyInUse   = "idempotency_key_in_use"
	codeTooLarge              = "request_too_large"
	codeUnsupportedMediaType  = "unsupported_media_type"
	codeIdempotencyKeyReused  = "idempotency_key_reused"
	codeSimulatedFailure      = "simulated_failure"
	codeInternal              = "internal_error"
	codeCurrencyMismatch      = "currency_mismatch"
	codeAmountTooLarge        = "amount_too_large"
)

var problems = map[string]struct {
	status int
	title  string
}{
	codeInvalidRequest:        {http.StatusBadRequest, "The request is invalid"},
	codeIdempotencyKeyMissing: {http.StatusBadRequest, "An Idempotency-Key header is required"},
	codeIdempotencyKeyInvalid: {http.StatusBadRequest, "The Idempotency-Key header is invalid"},
	codeUnexpectedState:       {http.StatusBadRequest, "The payment cannot do this in its current status"},
	codeUnauthorized:          {http.StatusUnauthorized, "Authentication required"},
	codeNotFound:              {http.StatusNotFound, "Not found"},
	codeDuplicateReference:    {http.StatusConflict, "A payment with this merchant reference exists"},
	codeIdempotencyKeyInUse:   {http.StatusConflict, "A request with this Idempotency-Key is in progress"},
	codeTooLarge:              {http.StatusRequestEntityTooLarge, "The request body is too large"},
	codeUnsupportedMediaType:  {http.StatusUnsupportedMediaType, "Send application/json"},
	codeIdempotencyKeyReused:  {http.StatusUnprocessableEntity, "The Idempotency-Key was used for a different request"},
	codeSimulatedFailure:      {http.StatusInternalServerError, "Simulated failure"},
	codeInternal:              {http.StatusInternalServerError, "Internal error"},
	codeCurrencyMismatch:      {http.StatusBadRequest, "The currency differs from the payment's"},
	codeAmountTooLarge:        {http.StatusBadRequest, "The amount exceeds what can still be refunded"},
}

// apiError is an answer other than success. Only codeInternal errors are
// logged: everything else is the caller's business.
type apiError struct {
	code       string
	detail     string
	param      string
	retryAfter int // seconds; 0 means no Retry-After
	cause      error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.code, e.detail, e.cause)
	}
	return e.code + ": " + e.detail
}

func (e *apiError) Unwrap() error { return e.cause }

func problemf(code, format string, a ...any) *apiError {
	return &apiError{code: code, detail: fmt.Sprintf(format, a...)}
}

func invalidParam(param, format string, a ...any) *apiError {
	return &apiError{code: codeInvalidRequest, param: param, detail: fmt.Sprintf(format, a...)}
}

// problem is the RFC 9457 body.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
	Param  string `json:"param,omitempty"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{code: codeInternal, detail: "the simulator failed; the request may or may not have taken effect", cause: err}
	}
	p, ok := problems[ae.code]
	if !ok {
		p = problems[codeInternal]
	}
	if ae.code == codeInternal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.status)
	_ = json.NewEncoder(w).Encode(problem{
		Type:   "https://github.com/paypipe/paypipe/blob/main/services/pspsim/doc.go#" + ae.code,
		Title:  p.title,
		Status: p.status,
		Code:   ae.code,
		Detail: ae.detail,
		Param:  ae.param,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// maxBody bounds every JSON request body.
const maxBody = 64 << 10

// decodeJSON reads exactly one JSON object into v, refusing unknown fields,
// trailing data, other media types and bodies over maxBody.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return problemf(codeUnsupportedMediaType, "Content-Type must be application/json")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return problemf(codeTooLarge, "the body exceeds %d bytes", maxBody)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return invalidParam(te.Field, "%s: wrong type (want %s)", te.Field, te.Type)
		}
		return problemf(codeInvalidRequest, "body is not a valid JSON object: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return problemf(codeInvalidRequest, "body has data after the JSON object")
	}
	return nil
}
