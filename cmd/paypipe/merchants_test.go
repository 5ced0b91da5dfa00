package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paypipe/paypipe/internal/pg"
	"github.com/paypipe/paypipe/services/payment"
)

// merchantsCLI runs `paypipe merchants …` through newMerchantsCmd, the way
// root runs it.
func merchantsCLI(t *testing.T, vars map[string]string, args ...string) (result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	e := &env{getenv: func(k string) string { return vars[k] }, stdout: &out, stderr: &errb}
	cmd := newMerchantsCmd(e)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(ctx)
	return result{stdout: out.String(), stderr: errb.String()}, err
}

func TestMerchantsCreateAndKeys(t *testing.T) {
	t.Parallel()
	vars := freshEnv(t)
	ctx := context.Background()

	// On a fresh database: migrates, creates, prints the key once.
	r, err := merchantsCLI(t, vars, "create", "--name", "Acme Market", "--fee-bps", "250", "-o", "json")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, r.stderr)
	}
	var created createdMerchant
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("create -o json: %v\n%s", err, r.stdout)
	}
	m, key := created.Merchant, created.APIKey
	if m.Name != "Acme Market" || m.FeeBps != 250 || !strings.HasPrefix(key, payment.APIKeyPrefix) || created.Prefix != key[:12] {
		t.Fatalf("created %+v", created)
	}
	pool, err := pg.Open(ctx, vars["DATABASE_URL"], pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sum := sha256.Sum256([]byte(key))
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payment.api_keys k JOIN payment.merchants m ON m.id = k.merchant_id
WHERE m.id = $1 AND m.fee_bps = 250 AND k.key_hash = $2`, m.ID, sum[:]).Scan(&n); err != nil || n != 1 {
		t.Fatalf("stored merchant and key hash: %d %v", n, err)
	}

	// Text output, default fee.
	r, err = merchantsCLI(t, vars, "create", "--name", "Bazaar")
	if err != nil || !strings.Contains(r.stdout, "300 bps") || !strings.Contains(r.stdout, payment.APIKeyPrefix) {
		t.Fatalf("create (text): %v\n%s", err, r.stdout)
	}

	// Rotation: a second key, then revoke the first.
	r, err = merchantsCLI(t, vars, "keys", "create", "--merchant", m.ID.String(), "-o", "json")
	if err != nil {
		t.Fatalf("keys create: %v %s", err, r.stderr)
	}
	var ck createdKey
	if err := json.Unmarshal([]byte(r.stdout), &ck); err != nil || ck.APIKey == key || ck.Key.MerchantID != m.ID {
		t.Fatalf("keys create: %v %s", err, r.stdout)
	}
	list := func() []payment.APIKey {
		t.Helper()
		r, err := merchantsCLI(t, vars, "keys", "list", "--merchant", m.ID.String(), "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var keys []payment.APIKey
		if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(r.stdout, key[12:]) {
			t.Fatal("keys list printed a secret")
		}
		return keys
	}
	keys := list()
	if len(keys) != 2 || keys[0].Prefix != created.Prefix {
		t.Fatalf("keys %+v", keys)
	}
	if r, err := merchantsCLI(t, vars, "keys", "revoke", keys[0].ID.String()); err != nil || !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("revoke: %v %s", err, r.stdout)
	}
	if keys = list(); keys[0].RevokedAt == nil || keys[1].RevokedAt != nil {
		t.Fatalf("after revoke: %+v", keys)
	}

	// Wrong invocations are usage errors and write nothing.
	for _, args := range [][]string{
		{"create"},
		{"create", "--name", "x", "--fee-bps", "10001"},
		{"create", "--name", "x", "--fee-bps", "-1"},
		{"create", "--name", strings.Repeat("x", 201)},
		{"create", "--name", "x", "-o", "yaml"},
		{"keys", "create"},
		{"keys", "revoke", "not-a-uuid"},
		{"keys", "revoke"},
	} {
		_, err := merchantsCLI(t, vars, args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payment.merchants`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d merchants, want 2 (%v)", n, err)
	}
}
