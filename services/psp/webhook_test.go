package psp

import (
	"errors"
	"testing"
	"time"
)

func TestVerifySignature(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1"}`)
	good := Sign(body, now, "s1")
	cases := []struct {
		name    string
		header  string
		body    []byte
		secrets []string
		at      time.Time
		want    error
	}{
		{"valid", good, body, []string{"s1"}, now, nil},
		{"rotation: old secret still accepted", good, body, []string{"s2", "s1"}, now, nil},
		{"rotation: two signatures, new secret", Sign(body, now, "s1", "s2"), body, []string{"s2"}, now, nil},
		{"missing", "", body, []string{"s1"}, now, ErrNoSignature},
		{"wrong secret", good, body, []string{"other"}, now, ErrBadSignature},
		{"one byte changed", good, []byte(`{"id":"evt_2"}`), []string{"s1"}, now, ErrBadSignature},
		{"299 s old", Sign(body, now.Add(-299*time.Second), "s1"), body, []string{"s1"}, now, nil},
		{"301 s old", Sign(body, now.Add(-301*time.Second), "s1"), body, []string{"s1"}, now, ErrStaleSignature},
		{"301 s ahead", Sign(body, now.Add(301*time.Second), "s1"), body, []string{"s1"}, now, ErrStaleSignature},
		{"garbage", "nonsense", body, []string{"s1"}, now, ErrMalformedSignature},
		{"bad hex", "t=1800000000,v1=zz", body, []string{"s1"}, now, ErrMalformedSignature},
		{"no v1", "t=1800000000", body, []string{"s1"}, now, ErrMalformedSignature},
	}
	for _, c := range cases {
		err := VerifySignature(c.header, c.body, c.secrets, c.at, DefaultTolerance)
		if !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add("t=1800000000,v1=00", []byte("x"))
	f.Add(Sign([]byte("x"), time.Unix(1_800_000_000, 0), "s"), []byte("x"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := VerifySignature(header, body, []string{"s"}, time.Unix(1_800_000_000, 0), DefaultTolerance)
		if err == nil && header != Sign(body, time.Unix(1_800_000_000, 0), "s") {
			// Accepting anything but our own signature would be a forgery;
			// only the exact signature (possibly with extra ignored keys) may pass.
			if VerifySignature(header, body, []string{"not-s"}, time.Unix(1_800_000_000, 0), DefaultTolerance) == nil {
				t.Fatalf("header %q verifies under any secret", header)
			}
		}
	})
}
