package payment

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Code is the stable identifier of an API error. Clients match on it (or
// on the problem type URI derived from it), never on titles or details.
type Code string

// Error codes of the API. Each maps to one HTTP status and one problem type
// URI in the problems table below; nothing else decides an error's status.
const (
	CodeUnauthorized          Code = "unauthorized"
	CodeNotFound              Code = "not_found"
	CodeMethodNotAllowed      Code = "method_not_allowed"
	CodeUnsupportedMediaType  Code = "unsupported_media_type"
	CodeRequestTooLarge       Code = "request_too_large"
	CodeInvalidJSON           Code = "invalid_json"
	CodeUnknownField          Code = "unknown_field"
	CodeValidationFailed      Code = "validation_failed"
	CodeInvalidParameter      Code = "invalid_parameter"
	CodeIdempotencyKeyMissing Code = "idempotency_key_missing"
	CodeIdempotencyKeyInvalid Code = "idempotency_key_invalid"
	CodeIdempotencyKeyInUse   Code = "idempotency_key_in_use"
	CodeIdempotencyKeyReused  Code = "idempotency_key_reused"
	CodeOrderNotFulfillable   Code = "order_not_fulfillable"
	CodeOrderNotRefundable    Code = "order_not_refundable"
	CodeRefundExceedsCaptured Code = "refund_exceeds_captured"
	CodeWebhookSignature      Code = "webhook_signature_invalid"
	CodeWebhookMalformed      Code = "webhook_malformed"
	CodeServiceUnavailable    Code = "service_unavailable"
	CodeInternal              Code = "internal_error"
)

// ProblemBaseURI prefixes every problem type: type = base + code with
// dashes (https://paypipe.dev/problems/idempotency-key-in-use).
const ProblemBaseURI = "https://paypipe.dev/problems/"

type problemKind struct {
	status int
	title  string
}

// problems is the one table from code to HTTP status and title.
var problems = map[Code]problemKind{
	CodeUnauthorized:          {http.StatusUnauthorized, "Unauthorized"},
	CodeNotFound:              {http.StatusNotFound, "Not found"},
	CodeMethodNotAllowed:      {http.StatusMethodNotAllowed, "Method not allowed"},
	CodeUnsupportedMediaType:  {http.StatusUnsupportedMediaType, "Unsupported media type"},
	CodeRequestTooLarge:       {http.StatusRequestEntityTooLarge, "Request body too large"},
	CodeInvalidJSON:           {http.StatusBadRequest, "Invalid JSON"},
	CodeUnknownField:          {http.StatusBadRequest, "Unknown field"},
	CodeValidationFailed:      {http.StatusBadRequest, "Validation failed"},
	CodeInvalidParameter:      {http.StatusBadRequest, "Invalid query parameter"},
	CodeIdempotencyKeyMissing: {http.StatusBadRequest, "Idempotency-Key header missing"},
	CodeIdempotencyKeyInvalid: {http.StatusBadRequest, "Idempotency-Key header invalid"},
	CodeIdempotencyKeyInUse:   {http.StatusTooManyRequests, "Idempotency-Key in use"},
	CodeIdempotencyKeyReused:  {http.StatusUnprocessableEntity, "Idempotency-Key reused"},
	// The order's state forbids the request now; the detail says why (its
	// status, what is still refundable). Stored like any 4xx: a retry with
	// the same key gets the same answer, a new key asks again.
	CodeOrderNotFulfillable:   {http.StatusConflict, "Payment order not fulfillable"},
	CodeOrderNotRefundable:    {http.StatusConflict, "Payment order not refundable"},
	CodeRefundExceedsCaptured: {http.StatusConflict, "Refund exceeds the refundable amount"},
	CodeWebhookSignature:      {http.StatusBadRequest, "Webhook signature invalid"},
	CodeWebhookMalformed:      {http.StatusBadRequest, "Webhook body malformed"},
	CodeServiceUnavailable:    {http.StatusServiceUnavailable, "Service unavailable"},
	CodeInternal:              {http.StatusInternalServerError, "Internal error"},
}

// ProblemType returns the problem type URI of code.
func ProblemType(code Code) string {
	return ProblemBaseURI + strings.ReplaceAll(string(code), "_", "-")
}

// Field error codes (FieldError.Code): the specific reason a field was
// refused, so that a client can tell "amount is zero" from "amount is a
// string" without parsing prose.
const (
	FieldRequired                = "required"
	FieldInvalidType             = "invalid_type"
	FieldInvalidString           = "invalid_string"
	FieldInvalidUUID             = "invalid_uuid"
	FieldUnknownField            = "unknown_field"
	FieldDuplicateField          = "duplicate_field"
	FieldAmountNotInteger        = "amount_not_integer"
	FieldAmountNotPositive       = "amount_not_positive"
	FieldAmountTooLarge          = "amount_too_large"
	FieldTotalTooLarge           = "total_too_large"
	FieldCurrencyNotUpperCase    = "currency_not_upper_case"
	FieldCurrencyUnknown         = "currency_unknown"
	FieldInvalidMode             = "invalid_mode"
	FieldPaymentMethodRequired   = "payment_method_required"
	FieldPaymentMethodNotAllowed = "payment_method_not_allowed"
	FieldPaymentMethodInvalid    = "payment_method_invalid"
	FieldReturnURLRequired       = "return_url_required"
	FieldReturnURLInvalid        = "return_url_invalid"
	FieldReturnURLInsecure       = "return_url_insecure"
	FieldReturnURLHostNotAllowed = "return_url_host_not_allowed"
	FieldTooFewItems             = "too_few_items"
	FieldTooManyItems            = "too_many_items"
	FieldSellerNotFound          = "seller_not_found"
	FieldDuplicateSeller         = "duplicate_seller"
	FieldUnknownParameter        = "unknown_parameter"
	FieldDuplicateParameter      = "duplicate_parameter"
	FieldOutOfRange              = "out_of_range"
	FieldStartingAfterNotFound   = "starting_after_not_found"
	FieldInvalidEnum             = "invalid_enum"
	FieldInvalidTimestamp        = "invalid_timestamp"
)

// FieldError is one entry of a problem's "errors" member.
type FieldError struct {
	// Field is the path of the offending input: a body field
	// ("orders[2].amount_minor") or a query parameter ("limit").
	Field  string `json:"field"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// Problem is an RFC 9457 problem details body (application/problem+json),
// extended with the stable code and, for validation errors, the field errors.
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Code   Code         `json:"code"`
	Errors []FieldError `json:"errors,omitempty"`
}

// apiError is what handlers return for anything but success. Internal
// errors (code CodeInternal or CodeServiceUnavailable) carry their cause for
// the log; it never reaches the client.
type apiError struct {
	code       Code
	detail     string
	fields     []FieldError
	retryAfter int    // seconds; 0 = no Retry-After header
	allow      string // Allow header of a 405
	cause      error
}

func (e *apiError) Error() string {
	s := string(e.code)
	if e.detail != "" {
		s += ": " + e.detail
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *apiError) Unwrap() error { return e.cause }

func (e *apiError) status() int { return problems[e.code].status }

func errorf(code Code, format string, a ...any) *apiError {
	return &apiError{code: code, detail: fmt.Sprintf(format, a...)}
}

func fieldErrors(fields ...FieldError) *apiError {
	return &apiError{code: CodeValidationFailed, detail: "the request has invalid fields; see errors", fields: fields}
}

func internal(err error) *apiError {
	return &apiError{code: CodeInternal, cause: err}
}

// asAPIError turns any error into the apiError to answer with. Errors that
// are not apiErrors are internal.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return internal(err)
}

// problemBody encodes e as the problem document.
func (e *apiError) problemBody() []byte {
	k, ok := problems[e.code]
	if !ok { // a code missing from the table is a bug; answer 500, never panic
		e = internal(fmt.Errorf("error code %q missing from the problems table", e.code))
		k = problems[CodeInternal]
	}
	p := Problem{Type: ProblemType(e.code), Title: k.title, Status: k.status, Detail: e.detail, Code: e.code, Errors: e.fields}
	if e.code == CodeInternal || e.code == CodeServiceUnavailable {
		p.Detail = "" // internal causes stay in the log
	}
	b, err := json.Marshal(p)
	if err != nil { // cannot happen for these types
		return []byte(`{"type":"` + ProblemType(CodeInternal) + `","title":"Internal error","status":500,"code":"internal_error"}`)
	}
	return b
}

// writeProblem answers with e, setting the headers its code calls for.
func writeProblem(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.allow != "" {
		w.Header().Set("Allow", e.allow)
	}
	if e.code == CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="paypipe"`)
	}
	writeBody(w, e.status(), e.problemBody())
}

// contentTypeFor is the media type of a response body with this status:
// every error is a problem document.
func contentTypeFor(status int) string {
	if status >= 400 {
		return "application/problem+json"
	}
	return "application/json"
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentTypeFor(status))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
