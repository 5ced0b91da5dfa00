package main

import (
	"strings"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/demo"
)

// service is what the binary needs to know to run one service: its schema
// (migrations, outbox, inbox) and its consumers. Services are registered here
// rather than discovering themselves, so the binary's contents are explicit.
type service struct {
	name      string
	schema    migrate.Schema
	consumers []outbox.ConsumerSpec
}

func (s service) store() outbox.Store { return s.schema.Store }

// registry lists every service the binary can run, in start-up order.
func registry() []service {
	return []service{
		{name: "demo", schema: demo.Schema(), consumers: []outbox.ConsumerSpec{demo.Consumer()}},
	}
}

// selectServices returns the named services, or all of them for no names.
func selectServices(names []string) ([]service, error) {
	all := registry()
	if len(names) == 0 {
		return all, nil
	}
	byName := map[string]service{}
	var known []string
	for _, s := range all {
		byName[s.name] = s
		known = append(known, s.name)
	}
	var out []service
	seen := map[string]bool{}
	for _, n := range names {
		s, ok := byName[n]
		if !ok {
			return nil, usagef("unknown service %q (known: %s)", n, strings.Join(known, ", "))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, s)
		}
	}
	return out, nil
}

func schemasOf(svcs []service) []migrate.Schema {
	out := make([]migrate.Schema, len(svcs))
	for i, s := range svcs {
		out[i] = s.schema
	}
	return out
}

func serviceNames(svcs []service) string {
	names := make([]string, len(svcs))
	for i, s := range svcs {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// storeFor picks the stores of --schema (all services' when empty).
func storeFor(schema string) ([]outbox.Store, error) {
	var out []outbox.Store
	var known []string
	for _, s := range registry() {
		known = append(known, s.store().Schema())
		if schema == "" || s.store().Schema() == schema {
			out = append(out, s.store())
		}
	}
	if len(out) == 0 {
		return nil, usagef("unknown schema %q (known: %s)", schema, strings.Join(known, ", "))
	}
	return out, nil
}
