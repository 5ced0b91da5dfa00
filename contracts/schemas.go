package contracts

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// The event schemas: one JSON Schema (draft 2020-12) per ce-type, named
// <ce-type>.json, plus common.json with the shared definitions. Each file's
// $id is SchemaBaseURL + its name, which is how they refer to each other.
//
// The Go types in events.go are what paypipe's services marshal; the schemas
// are the same contract for everyone else (consumers in other languages,
// asyncapi.yaml) and are stricter where JSON alone cannot say it: canonical
// UUIDs, upper-case currencies, amount bounds, enums, the fields a mode or a
// kind requires. This package's tests hold the schemas to the Go types
// (field names, omitempty, enum constants) and validate events built as the
// services build them; a service's own tests can run ValidateEvent on what it
// writes to its outbox, and a consumer at a trust boundary may call it too.
//
//go:embed schemas/*.json
var schemaFS embed.FS

// SchemaBaseURL is the base of every event schema's $id.
const SchemaBaseURL = "https://paypipe.dev/schemas/"

// commonSchema holds shared definitions; it describes no event.
const commonSchema = "common.json"

// Errors of ValidateEvent; match them with errors.Is.
var (
	// ErrUnknownEventType: no schema describes the ce-type.
	ErrUnknownEventType = errors.New("contracts: unknown event type")
	// ErrInvalidEvent: the payload is not JSON or breaks its type's schema.
	// The error is a *SchemaError listing every violation.
	ErrInvalidEvent = errors.New("contracts: event does not match its schema")
)

// Violation is one way a payload breaks its schema.
type Violation struct {
	// Path is the JSON pointer of the offending value ("" for the root),
	// e.g. /orders/0/amount_minor.
	Path string
	// Message says what is wrong, e.g. "minimum: got 0, want 1".
	Message string
}

func (v Violation) String() string {
	p := v.Path
	if p == "" {
		p = "/"
	}
	return p + ": " + v.Message
}

// SchemaError reports a payload that is not valid for its event type. It
// wraps ErrInvalidEvent.
type SchemaError struct {
	Type       string
	Violations []Violation
}

func (e *SchemaError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "contracts: %s payload does not match its schema: ", e.Type)
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.String())
	}
	return b.String()
}

func (e *SchemaError) Unwrap() error { return ErrInvalidEvent }

// Validator checks event payloads against the embedded schemas. It is
// immutable once built and safe for concurrent use.
type Validator struct {
	schemas map[string]*jsonschema.Schema // by ce-type
	printer *message.Printer              // renders violations; safe for concurrent use
}

// NewValidator compiles every embedded schema. Format assertions are on
// (uuid, date-time, uri are checked, not just annotated), and no schema is
// ever fetched: references resolve among the embedded files only, so a
// mistyped $ref fails here instead of reaching for the network or the disk.
func NewValidator() (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	names, err := fs.Glob(schemaFS, "schemas/*.json")
	if err != nil {
		return nil, fmt.Errorf("contracts: list schemas: %w", err)
	}
	var types []string
	for _, name := range names {
		raw, err := schemaFS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("contracts: read %s: %w", name, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("contracts: parse %s: %w", name, err)
		}
		base := path.Base(name)
		if err := c.AddResource(SchemaBaseURL+base, doc); err != nil {
			return nil, fmt.Errorf("contracts: add %s: %w", name, err)
		}
		if base != commonSchema {
			types = append(types, strings.TrimSuffix(base, ".json"))
		}
	}
	v := &Validator{
		schemas: make(map[string]*jsonschema.Schema, len(types)),
		printer: message.NewPrinter(language.English),
	}
	for _, t := range types {
		s, err := c.Compile(SchemaBaseURL + t + ".json")
		if err != nil {
			return nil, fmt.Errorf("contracts: compile schema of %s: %w", t, err)
		}
		v.schemas[t] = s
	}
	return v, nil
}

// noLoader refuses every URL: all schemas are added as resources up front.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("contracts: schema %s is not embedded", url)
}

// Validate checks payload, the JSON body of an event of type ceType (e.g.
// payments.order.succeeded.v1). It returns an error wrapping
// ErrUnknownEventType when no schema describes ceType, and a *SchemaError
// (wrapping ErrInvalidEvent) listing every violation when payload breaks it.
func (v *Validator) Validate(ceType string, payload []byte) error {
	s, ok := v.schemas[ceType]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownEventType, ceType)
	}
	// UnmarshalJSON keeps numbers as json.Number, so an amount beyond
	// float64's exact range is still compared exactly with its bounds.
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return &SchemaError{Type: ceType, Violations: []Violation{{Message: "not a JSON document: " + err.Error()}}}
	}
	err = s.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("contracts: validate %s: %w", ceType, err)
	}
	return &SchemaError{Type: ceType, Violations: v.violations(ve)}
}

// violations flattens the validator's error tree into its leaves: the
// specific failures, not the "allOf failed" and "$ref failed" around them.
func (v *Validator) violations(ve *jsonschema.ValidationError) []Violation {
	var out []Violation
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, Violation{Path: pointer(e.InstanceLocation), Message: e.ErrorKind.LocalizedString(v.printer)})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	slices.SortFunc(out, func(a, b Violation) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
	return slices.Compact(out)
}

// pointer renders an instance location as a JSON pointer (RFC 6901).
func pointer(tokens []string) string {
	var b strings.Builder
	r := strings.NewReplacer("~", "~0", "/", "~1")
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(r.Replace(t))
	}
	return b.String()
}

// Types returns the ce-types the validator knows, sorted.
func (v *Validator) Types() []string {
	out := make([]string, 0, len(v.schemas))
	for t := range v.schemas {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// defaultValidator is compiled on first use. It is read-only afterwards;
// the embedded files are fixed at build time, so an error here is a broken
// build and every call reports it.
var defaultValidator = sync.OnceValues(NewValidator)

// ValidateEvent checks an event payload against the schema of its ce-type
// with a validator built once from the embedded schemas. See
// Validator.Validate.
func ValidateEvent(ceType string, payload []byte) error {
	v, err := defaultValidator()
	if err != nil {
		return err
	}
	return v.Validate(ceType, payload)
}

// EventTypes returns every ce-type that has a schema, sorted.
func EventTypes() []string {
	names, err := fs.Glob(schemaFS, "schemas/*.json")
	if err != nil {
		return nil // the pattern is a constant and valid
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if b := path.Base(n); b != commonSchema {
			out = append(out, strings.TrimSuffix(b, ".json"))
		}
	}
	slices.Sort(out)
	return out
}
