package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/paypipe/paypipe/internal/verify"
)

// Step 6: the invariants, checked by internal/verify over the whole
// database, as an operator runs them after an incident.

// demoGrace is verify's grace period here: so small that any effect still
// in flight counts as missing, so a pass means the pipeline is quiet and
// consistent, not merely "nothing old is missing".
const demoGrace = time.Millisecond

func (d *demoRun) runInvariantChecks(ctx context.Context) error {
	d.say("\n8. Invariants (internal/verify over the whole database, grace %s: in-flight effects count as missing)", demoGrace)
	var rep verify.Report
	var runErr error
	t0 := time.Now()
	// The last completion events may still be in flight: retry until the
	// report is clean, within a deadline.
	err := waitFor(ctx, 15*time.Second, "the invariant checks to pass", func(ctx context.Context) (bool, error) {
		rep, runErr = verify.Run(ctx, d.a.pool, verify.Options{Grace: demoGrace})
		return runErr == nil && rep.OK(), runErr
	})
	if runErr != nil {
		return fmt.Errorf("verify: %w", runErr)
	}
	if err != nil && ctx.Err() != nil {
		return err
	}
	if rep.OK() {
		d.say("   clean after %s", time.Since(t0).Round(time.Millisecond))
	}
	// A violation names its invariant (e.g. "I5 no event lost"); a check
	// line starts with the same code.
	failed := map[string][]string{}
	for _, v := range rep.Violations {
		code, _, _ := strings.Cut(v.Invariant, " ")
		failed[code] = append(failed[code], fmt.Sprintf("%s %s: %s", v.Invariant, v.Subject, v.Detail))
	}
	for _, c := range rep.Checks {
		code, _, _ := strings.Cut(c, " ")
		d.check("   ", c, len(failed[code]) == 0, failed[code]...)
		delete(failed, code)
	}
	for code, vs := range failed { // a violation of a check not listed
		d.check("   ", code, false, vs...)
	}
	for _, w := range rep.Warnings {
		d.say("   warning: %s", w)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range rep.Counts {
			if !yield(k) {
				return
			}
		}
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, rep.Counts[k])
	}
	d.say("   counts (whole database, earlier runs included): %s", strings.Join(parts, ", "))
	return nil
}
