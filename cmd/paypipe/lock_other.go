//go:build !unix

package main

import "os"

// lockDir only creates dir where flock is unavailable; running two embedded
// servers on one store there is the operator's to avoid.
func lockDir(dir string) (func(), error) {
	return func() {}, os.MkdirAll(dir, 0o750)
}
