package payment

// The HTTP API, version 1 (contracts/openapi.yaml describes it).
//
// Every request is authenticated with a merchant's API key, and every object
// belongs to one merchant: queries always filter by the caller's merchant id,
// so another merchant's object is indistinguishable from a missing one (404,
// same body). Input is strict: JSON bodies of at most 64 KiB, decoded with
// unknown fields refused (which is also what stops mass assignment of status,
// fee or merchant_id), no duplicate keys, no keys differing only in case, no
// trailing data, nesting at most 32 deep, valid UTF-8; amounts are JSON
// integers of minor units; currencies exact upper-case ISO 4217 codes; ids
// canonical UUIDs. A rejected request changes nothing but, for POSTs that got
// as far as claiming their Idempotency-Key, the stored response of that key
// (idempotency.go explains why). Errors are RFC 9457 problem documents whose
// status and type come from one table (problem.go).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/paypipe/paypipe/outbox"
)

// Input limits.
const (
	// MaxBodyBytes bounds every request body (RELIABILITY S5).
	MaxBodyBytes = 64 << 10
	// maxJSONDepth bounds the nesting of a body (S5); the API's own
	// documents are 3 deep.
	maxJSONDepth = 32
)

// handlerFunc is an HTTP handler that reports failure by returning an error,
// which serve turns into a problem document (and a log line if internal).
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handler returns the API's HTTP handler. Transport limits (header timeouts,
// header size) belong to the http.Server; the handler bounds what it reads
// itself (body size, JSON depth, list sizes) and the time it spends in the
// database (Config.RequestTimeout).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, h handlerFunc) { mux.Handle(pattern, s.serve(h)) }
	route("POST /v1/sellers", s.authed(s.idempotent(s.createSeller)))
	route("GET /v1/sellers/{id}", s.authed(s.getSeller))
	route("POST /v1/checkouts", s.authed(s.idempotent(s.createCheckout)))
	route("GET /v1/checkouts", s.authed(s.listCheckouts))
	route("GET /v1/checkouts/{id}", s.authed(s.getCheckout))
	route("GET /v1/payment_orders/{id}", s.authed(s.getPaymentOrder))
	route("POST /v1/payment_orders/{id}/fulfil", s.authed(s.idempotentAction(s.fulfil)))
	route("POST /v1/payment_orders/{id}/refunds", s.authed(s.idempotentAction(s.createRefund)))
	route("GET /v1/payment_orders/{id}/refunds", s.authed(s.listRefunds))
	route("GET /v1/refunds/{id}", s.authed(s.getRefund))
	route("GET /v1/payouts", s.authed(s.listPayouts))
	route("GET /v1/payouts/{id}", s.authed(s.getPayout))
	// The PSP authenticates by signature, not by API key.
	route("POST /v1/psp/webhooks", s.webhook)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		reqID := uuid.Must(uuid.NewV7()).String()
		h.Set("Request-Id", reqID)
		r = r.WithContext(outbox.WithCorrelationID(r.Context(), reqID))
		if _, pattern := mux.Handler(r); pattern == "" {
			s.noRoute(w, r, mux)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// noRoute answers what the mux has no route for with a problem document
// instead of its plain-text 404 or 405 (keeping the 405's Allow header).
func (s *Service) noRoute(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	rec := &headerRecorder{header: http.Header{}}
	mux.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		writeProblem(w, &apiError{code: CodeMethodNotAllowed, allow: rec.header.Get("Allow"),
			detail: fmt.Sprintf("%s is not allowed here", r.Method)})
		return
	}
	writeProblem(w, &apiError{code: CodeNotFound})
}

// headerRecorder keeps the status and headers of the mux's own error
// answers and drops their bodies.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}
func (h *headerRecorder) Write(p []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(p), nil
}

// serve adapts h: it bounds the request's time, answers its error with a
// problem document, logs internal errors, and turns a panic into a 500.
func (s *Service) serve(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.fail(w, r, internal(fmt.Errorf("panic: %v\n%s", p, debug.Stack())))
			}
		}()
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
}

func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	ae := asAPIError(err)
	if ae.status() >= 500 {
		level := s.log.Error
		if errors.Is(r.Context().Err(), context.Canceled) {
			level = s.log.Debug // the client went away; nothing is wrong here
		}
		level("request failed", "method", r.Method, "path", r.URL.Path,
			"request_id", outbox.CorrelationID(r.Context()), "code", ae.code, "err", ae.cause)
	}
	writeProblem(w, ae)
}

// dbError classifies a database failure: outages, timeouts and conflicts a
// retry can resolve are 503 with Retry-After; anything else is a 500.
func dbError(err error) *apiError {
	if retryable(err) {
		return &apiError{code: CodeServiceUnavailable, retryAfter: 1, cause: err}
	}
	return internal(err)
}

func retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutting down, cannot connect now
			pe.Code == "53300",                     // too many connections
			pe.Code == "40001", pe.Code == "40P01", // serialization failure, deadlock
			pe.Code == "57014": // statement timeout
			return true
		}
	}
	return false
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return internal(fmt.Errorf("encode response: %w", err))
	}
	writeBody(w, status, b)
	return nil
}

// requireJSON checks the request's media type: application/json, with at
// most a utf-8 charset parameter.
func requireJSON(r *http.Request) *apiError {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return errorf(CodeUnsupportedMediaType, "Content-Type must be application/json")
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return errorf(CodeUnsupportedMediaType, "Content-Type must be application/json (charset utf-8 only)")
		}
	}
	return nil
}

// readBody reads at most MaxBodyBytes of the body; more is a 413.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	tooLarge := errorf(CodeRequestTooLarge, "the body must be at most %d bytes", MaxBodyBytes)
	if r.ContentLength > MaxBodyBytes {
		return nil, tooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, errorf(CodeInvalidJSON, "reading the body failed")
	}
	return b, nil
}

// decodeStrict decodes body, a JSON object, into dst, refusing anything a
// lenient decoder would let through. It runs in two passes: a token scan for
// what encoding/json accepts silently (duplicate keys, where the last wins;
// keys matched case-insensitively; depth; trailing data; invalid UTF-8,
// which it would replace), then the decode with unknown fields refused.
func decodeStrict(body []byte, dst any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return errorf(CodeInvalidJSON, "the body is empty; want a JSON object")
	}
	if !utf8.Valid(body) {
		return errorf(CodeInvalidJSON, "the body is not valid UTF-8")
	}
	if err := scanJSON(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				return errorf(CodeInvalidJSON, "the body must be a JSON object")
			}
			return fieldErrors(FieldError{Field: field, Code: FieldInvalidType,
				Detail: fmt.Sprintf("got a JSON %s, want %s", te.Value, jsonKind(te.Type.String()))})
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
			return unknownField(name)
		default:
			return errorf(CodeInvalidJSON, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	return nil
}

func unknownField(name string) *apiError {
	return &apiError{code: CodeUnknownField, detail: fmt.Sprintf("unknown field %q", name),
		fields: []FieldError{{Field: name, Code: FieldUnknownField, Detail: "this field does not exist or cannot be set"}}}
}

func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "int"):
		return "an integer"
	default:
		return "an object"
	}
}

type scanFrame struct {
	object    bool
	path      string          // of this container: "", "orders", "orders[2]"
	keys      map[string]bool // keys seen, for objects
	lastKey   string
	expectKey bool
	index     int // of the next element, for arrays
}

// childPath is the path of the value about to be read inside f.
func (f *scanFrame) childPath() string {
	if !f.object {
		return fmt.Sprintf("%s[%d]", f.path, f.index)
	}
	if f.path == "" {
		return f.lastKey
	}
	return f.path + "." + f.lastKey
}

// scanJSON walks body's tokens once, checking what decodeStrict's first pass
// promises. Its work is linear in the body, which MaxBodyBytes bounds.
func scanJSON(body []byte) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []*scanFrame
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if top := stack[len(stack)-1]; top.object {
			top.expectKey = true
		} else {
			top.index++
		}
	}
	for first := true; ; first = false {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errorf(CodeInvalidJSON, "the body ends before the JSON document does")
			}
			return errorf(CodeInvalidJSON, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return errorf(CodeInvalidJSON, "the body must be a JSON object")
			}
		}
		d, isDelim := tok.(json.Delim)
		switch n := len(stack); {
		case n > 0 && stack[n-1].object && stack[n-1].expectKey && !isDelim:
			top := stack[n-1]
			key, _ := tok.(string)
			top.lastKey = key
			path := top.childPath()
			if strings.IndexFunc(key, unicode.IsUpper) >= 0 {
				// Field names are lower-case snake_case. encoding/json would
				// match "Currency" to currency; refusing it keeps what the
				// client sent and what we read the same thing.
				return unknownField(path)
			}
			if top.keys[key] {
				return &apiError{code: CodeInvalidJSON, detail: fmt.Sprintf("field %q appears more than once", path),
					fields: []FieldError{{Field: path, Code: FieldDuplicateField, Detail: "each field may appear once"}}}
			}
			top.keys[key] = true
			top.expectKey = false
		case isDelim && (d == '{' || d == '['):
			if n >= maxJSONDepth {
				return errorf(CodeInvalidJSON, "the body nests deeper than %d levels", maxJSONDepth)
			}
			path := ""
			if n > 0 {
				path = stack[n-1].childPath()
			}
			stack = append(stack, &scanFrame{object: d == '{', path: path, keys: map[string]bool{}, expectKey: d == '{'})
		case isDelim: // '}' or ']'; the decoder has checked they match
			stack = stack[:n-1]
			valueDone()
		default:
			valueDone()
		}
		if len(stack) == 0 {
			break
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(CodeInvalidJSON, "unexpected data after the JSON object")
	}
	return nil
}

// strictQuery parses the query string, allowing only the named parameters,
// each at most once.
func strictQuery(r *http.Request, allowed ...string) (url.Values, *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(CodeInvalidParameter, "the query string is malformed")
	}
	var fields []FieldError
	for k, v := range q {
		switch {
		case !containsString(allowed, k):
			fields = append(fields, FieldError{Field: k, Code: FieldUnknownParameter, Detail: "unknown query parameter"})
		case len(v) > 1:
			fields = append(fields, FieldError{Field: k, Code: FieldDuplicateParameter, Detail: "given more than once"})
		}
	}
	if len(fields) > 0 {
		return nil, &apiError{code: CodeInvalidParameter, detail: "the query has invalid parameters; see errors", fields: fields}
	}
	return q, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseID accepts only the canonical 36-character UUID form: uuid.Parse
// also takes braces, urn: prefixes and undashed hex, and one object should
// have one spelling.
func parseUUID(s string) (uuid.UUID, bool) {
	if len(s) != 36 {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(s)
	return id, err == nil
}

// validText checks a free-text field: 1..maxLen characters, not blank, no
// control characters. Other characters (quotes, SQL, markup) are stored
// verbatim: every query is parameterised and every log is structured.
func validText(s string, maxLen int) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "must not be empty"
	case utf8.RuneCountInString(s) > maxLen:
		return fmt.Sprintf("must be at most %d characters", maxLen)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "must not contain control characters"
	}
	return ""
}
