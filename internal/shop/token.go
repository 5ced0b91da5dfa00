package shop

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Form tokens. Every rendering of the shop page carries a fresh nonce in a
// hidden field; the nonce names the order (its URL) and derives the
// checkout's Idempotency-Key, so submitting one form twice (a double click,
// a retry after a timeout) asks paypipe for the same checkout twice and gets
// one. The token is the nonce, its issue time and an HMAC over both with a
// key that lives only in this Shop, so a client cannot pick the key paypipe
// sees, and an old form stops working after formTTL.

const (
	nonceBytes = 16
	macBytes   = 16
	// formTTL is how long a rendered form can be submitted.
	formTTL = time.Hour
	// clockSkew tolerates a token from a replica whose clock is ahead.
	clockSkew = time.Minute
)

var b64 = base64.RawURLEncoding

// errToken is wrapped by every token check failure.
var errToken = errors.New("form token")

// refLen is the length of an encoded nonce, which is also an order ref.
var refLen = b64.EncodedLen(nonceBytes)

type tokens struct {
	key []byte
	now func() time.Time
}

func newTokens(now func() time.Time) (tokens, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return tokens{}, fmt.Errorf("shop: token key: %w", err)
	}
	return tokens{key: key, now: now}, nil
}

func (t tokens) mac(nonce, issued string) string {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(nonce + "." + issued))
	return b64.EncodeToString(m.Sum(nil)[:macBytes])
}

// issue returns a new token.
func (t tokens) issue() (string, error) {
	n := make([]byte, nonceBytes)
	if _, err := rand.Read(n); err != nil {
		return "", fmt.Errorf("shop: nonce: %w", err)
	}
	nonce := b64.EncodeToString(n)
	issued := strconv.FormatInt(t.now().Unix(), 10)
	return nonce + "." + issued + "." + t.mac(nonce, issued), nil
}

// check verifies a token and returns its nonce.
func (t tokens) check(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(tok) > 128 || len(parts) != 3 || !validRef(parts[0]) {
		return "", fmt.Errorf("%w: malformed", errToken)
	}
	if !hmac.Equal([]byte(parts[2]), []byte(t.mac(parts[0], parts[1]))) {
		return "", fmt.Errorf("%w: not issued by this shop (or the shop restarted)", errToken)
	}
	sec, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: malformed time", errToken)
	}
	age := t.now().Sub(time.Unix(sec, 0))
	if age > formTTL || age < -clockSkew {
		return "", fmt.Errorf("%w: expired", errToken)
	}
	return parts[0], nil
}

// validRef checks the shape of an order ref (an encoded nonce) before any
// lookup.
func validRef(s string) bool {
	if len(s) != refLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
