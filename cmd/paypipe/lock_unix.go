//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive advisory lock on dir for the life of the
// process (or until unlock). nats-server does not lock its store, and two
// embedded servers on one store directory corrupt it: two `paypipe serve`
// with the same PAYPIPE_DATA_DIR must fail, not both start.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded NATS store %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "paypipe.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS store lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("embedded NATS store %s is in use by another paypipe process: set PAYPIPE_DATA_DIR to another directory, or NATS_URL to share one broker", dir)
		}
		return nil, fmt.Errorf("embedded NATS store lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
