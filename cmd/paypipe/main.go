// Command paypipe runs and operates the payment pipeline: `paypipe serve`
// runs services, `paypipe migrate` and `paypipe outbox` are operator tools,
// and `paypipe demo` shows the outbox → JetStream → inbox backbone end to end.
//
// main only wires the process to run: arguments, environment, standard
// streams and a context cancelled by SIGINT/SIGTERM. Everything else takes
// them as parameters, so tests run the real commands in-process, in parallel,
// without touching the process environment. Each command lives in its own
// file; app.go is the in-process assembly that serve, demo and the tests share.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling: a second Ctrl-C
	// kills a shutdown that hangs.
	go func() { <-ctx.Done(); stop() }()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
