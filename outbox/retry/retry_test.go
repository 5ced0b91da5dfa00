package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

const ms = time.Millisecond

// justBelowOne is the largest draw rand.Float64 can return.
var justBelowOne = math.Nextafter(1, 0)

// serverBusy is an error carrying a server's Retry-After, like psp.Error.
type serverBusy struct{ after time.Duration }

func (e serverBusy) Error() string             { return "busy" }
func (e serverBusy) RetryAfter() time.Duration { return e.after }
func (e serverBusy) Permanent() bool           { return false }
func seq(p Policy, n int) (out []time.Duration) {
	for i := 1; i <= n; i++ {
		out = append(out, p.Delay(i, nil))
	}
	return out
}

func TestStrategySequences(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		p    Policy
		want []time.Duration
	}{
		{"zero policy is immediate", Policy{}, []time.Duration{0, 0, 0, 0}},
		{"immediate ignores Initial", Policy{Strategy: Immediate, Initial: time.Second}, []time.Duration{0, 0, 0}},
		{"fixed", Policy{Strategy: Fixed, Initial: 250 * ms}, []time.Duration{250 * ms, 250 * ms, 250 * ms, 250 * ms}},
		{"incremental", Policy{Strategy: Incremental, Initial: 100 * ms, Step: 50 * ms}, []time.Duration{100 * ms, 150 * ms, 200 * ms, 250 * ms, 300 * ms}},
		{"incremental from zero", Policy{Strategy: Incremental, Step: time.Second}, []time.Duration{0, time.Second, 2 * time.Second}},
		{"incremental capped", Policy{Strategy: Incremental, Initial: time.Second, Step: time.Second, Max: 3 * time.Second}, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second}},
		{"exponential default ×2", Policy{Strategy: Exponential, Initial: 100 * ms}, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms}},
		{"exponential ×3", Policy{Strategy: Exponential, Initial: time.Second, Multiplier: 3}, []time.Duration{time.Second, 3 * time.Second, 9 * time.Second, 27 * time.Second}},
		{"exponential ×1.5", Policy{Strategy: Exponential, Initial: time.Second, Multiplier: 1.5}, []time.Duration{time.Second, 1500 * ms, 2250 * ms, 3375 * ms}},
		{"exponential ×1 is fixed", Policy{Strategy: Exponential, Initial: time.Second, Multiplier: 1}, []time.Duration{time.Second, time.Second, time.Second}},
		{"exponential capped", Policy{Strategy: Exponential, Initial: time.Second, Max: 5 * time.Second}, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}},
		{"fixed capped", Policy{Strategy: Fixed, Initial: time.Minute, Max: time.Second}, []time.Duration{time.Second, time.Second}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := seq(c.p, len(c.want))
			for i := range c.want {
				if got[i] != c.want[i] {
					t.Fatalf("delays %v, want %v", got, c.want)
				}
			}
		})
	}
}

func TestAttemptBelowOneCountsAsOne(t *testing.T) {
	t.Parallel()
	p := Policy{Strategy: Exponential, Initial: time.Second}
	for _, n := range []int{0, -1, math.MinInt} {
		if d := p.Delay(n, nil); d != time.Second {
			t.Errorf("Delay(%d) = %s, want the first delay %s", n, d, time.Second)
		}
	}
}

// TestHugeAttemptsSaturate: attempt counts come from rows and delivery
// counters; a huge one must give the cap (or the largest Duration), never
// an overflowed, negative or zero delay.
func TestHugeAttemptsSaturate(t *testing.T) {
	t.Parallel()
	huge := []int{63, 64, 1 << 20, 1 << 40, math.MaxInt32, math.MaxInt}
	uncapped := []Policy{
		{Strategy: Exponential, Initial: time.Nanosecond},
		{Strategy: Exponential, Initial: time.Hour, Multiplier: 10},
		{Strategy: Incremental, Initial: time.Second, Step: time.Hour},
		{Strategy: Incremental, Initial: math.MaxInt64 - 1, Step: 1},
	}
	for _, p := range uncapped {
		for _, n := range huge[3:] { // 2^20 hours is not yet saturation
			if d := p.Delay(n, nil); d != math.MaxInt64 {
				t.Errorf("%v: Delay(%d) = %d, want saturation at MaxInt64", p, n, d)
			}
		}
		// Jitter on a saturated delay stays positive and within bounds.
		pj := p
		pj.Jitter = 0.5
		for _, u := range []float64{0, 0.5, justBelowOne} {
			d := pj.delay(math.MaxInt, nil, u)
			if d <= 0 || d < math.MaxInt64/2 {
				t.Errorf("%v: jittered Delay(MaxInt, u=%v) = %d, want in [MaxInt64/2, MaxInt64]", pj, u, d)
			}
		}
	}
	// Monotone up to saturation: no wrap-around on the way.
	p := Policy{Strategy: Exponential, Initial: time.Millisecond}
	prev := time.Duration(0)
	for n := 1; n <= 200; n++ {
		d := p.Delay(n, nil)
		if d < prev {
			t.Fatalf("Delay(%d) = %d < Delay(%d) = %d", n, d, n-1, prev)
		}
		prev = d
	}
	capped := []Policy{
		{Strategy: Exponential, Initial: 100 * ms, Max: 30 * time.Second},
		{Strategy: Exponential, Initial: time.Second, Multiplier: 10, Max: time.Hour},
		{Strategy: Incremental, Initial: time.Second, Step: time.Hour, Max: 2 * time.Hour},
	}
	for _, p := range capped {
		for _, n := range huge {
			if d := p.Delay(n, nil); d != p.Max {
				t.Errorf("%v: Delay(%d) = %s, want Max %s", p, n, d, p.Max)
			}
		}
	}
}

// TestJitterBounds pins the extremes of the random draw, then checks a
// large sample statistically: every delay in [(1−J)·d, d], both ends
// reached (within 2% of the range), mean near (1−J/2)·d.
func TestJitterBounds(t *testing.T) {
	t.Parallel()
	for _, j := range []float64{0.1, 0.2, 0.5, 1} {
		p := Policy{Strategy: Exponential, Initial: 100 * ms, Max: 30 * time.Second, Jitter: j}
		for _, n := range []int{1, 5, 20} {
			d := Policy{Strategy: p.Strategy, Initial: p.Initial, Max: p.Max}.Delay(n, nil)
			lo := time.Duration(float64(d) * (1 - j))
			if got := p.delay(n, nil, 0); got != d {
				t.Errorf("J=%v n=%d: delay at u=0 is %s, want the unjittered %s", j, n, got, d)
			}
			if got := p.delay(n, nil, justBelowOne); got < lo || got > lo+time.Nanosecond {
				t.Errorf("J=%v n=%d: delay at u→1 is %s, want %s", j, n, got, lo)
			}
			const samples = 10000
			minD, maxD, sum := time.Duration(math.MaxInt64), time.Duration(0), 0.0
			for range samples {
				got := p.Delay(n, nil)
				if got < lo || got > d {
					t.Fatalf("J=%v n=%d: delay %s outside [%s, %s]", j, n, got, lo, d)
				}
				minD, maxD, sum = min(minD, got), max(maxD, got), sum+float64(got)
			}
			// P(no sample in an end's 2%) = 0.98^10000 ≈ e^-202.
			width := float64(d - lo)
			if float64(minD-lo) > 0.02*width || float64(d-maxD) > 0.02*width {
				t.Errorf("J=%v n=%d: samples span [%s, %s] of [%s, %s]: jitter not uniform", j, n, minD, maxD, lo, d)
			}
			// The sample mean's standard deviation is width/√(12·10000) ≈
			// 0.003·width; 0.02·width is over six of them.
			mean, want := sum/samples, float64(d)*(1-j/2)
			if math.Abs(mean-want) > 0.02*width {
				t.Errorf("J=%v n=%d: mean %s, want about %s", j, n, time.Duration(mean), time.Duration(want))
			}
		}
	}
}

// Delay never fails: an invalid policy (Validate rejects it) still gives
// a delay in [0, MaxInt64], never a negative or wrapped one.
func TestInvalidPolicyDelaysClamp(t *testing.T) {
	t.Parallel()
	for _, p := range []Policy{
		{Strategy: Fixed, Initial: -time.Second},
		{Strategy: Incremental, Initial: -time.Second, Step: time.Second},
		{Strategy: Incremental, Initial: time.Second, Step: -time.Second},
		{Strategy: Exponential, Initial: -time.Second},
		{Strategy: Exponential, Initial: time.Second, Multiplier: 0.5},
		{Strategy: Exponential, Initial: time.Second, Multiplier: math.NaN()},
		{Strategy: 42, Initial: time.Second},
	} {
		for _, n := range []int{1, 2, 1000, math.MaxInt} {
			if d := p.Delay(n, nil); d < 0 {
				t.Errorf("%+v: Delay(%d) = %d", p, n, d)
			}
		}
	}
}

func TestJitterOnZeroDelayAndAboveOne(t *testing.T) {
	t.Parallel()
	if d := (Policy{Jitter: 0.5}).Delay(3, nil); d != 0 {
		t.Errorf("immediate with jitter: %s, want 0", d)
	}
	// Delay clamps a Jitter above 1 (Validate rejects it): never negative.
	p := Policy{Strategy: Fixed, Initial: time.Second, Jitter: 5}
	if d := p.delay(1, nil, justBelowOne); d < 0 || d > time.Nanosecond {
		t.Errorf("Jitter 5 at u→1: %s, want about 0", d)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	p := Policy{Strategy: Exponential, Initial: time.Second, Max: 10 * time.Second, Jitter: 0.5, MaxRetryAfter: 2 * time.Minute}
	cases := []struct {
		name string
		err  error
		n    int
		want time.Duration // at u→1 (the shortest jitter)
	}{
		{"longer than the backoff wins", serverBusy{30 * time.Second}, 1, 30 * time.Second},
		{"not shortened by jitter", serverBusy{3 * time.Second}, 3, 3 * time.Second},
		{"not capped by Max", serverBusy{time.Minute}, 1, time.Minute},
		{"capped by MaxRetryAfter", serverBusy{48 * time.Hour}, 1, 2 * time.Minute},
		{"shorter than the backoff: backoff wins", serverBusy{time.Millisecond}, 4, p.delay(4, nil, justBelowOne)},
		{"zero is no Retry-After", serverBusy{0}, 2, p.delay(2, nil, justBelowOne)},
		{"negative is no Retry-After", serverBusy{-time.Hour}, 2, p.delay(2, nil, justBelowOne)},
		{"found through wrapping", fmt.Errorf("create: %w", fmt.Errorf("http: %w", serverBusy{40 * time.Second})), 1, 40 * time.Second},
		{"found in a join after a zero one", errors.Join(serverBusy{0}, errors.New("x"), serverBusy{50 * time.Second}), 1, 50 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := p.delay(c.n, c.err, justBelowOne); got != c.want {
				t.Errorf("delay = %s, want %s", got, c.want)
			}
		})
	}
	// Default cap: 1 h.
	if got := (Policy{}).Delay(1, serverBusy{1000 * time.Hour}); got != DefaultMaxRetryAfter {
		t.Errorf("default cap: %s, want %s", got, DefaultMaxRetryAfter)
	}
	if d, ok := RetryAfter(nil); ok || d != 0 {
		t.Errorf("RetryAfter(nil) = %s, %v", d, ok)
	}
	if d, ok := RetryAfter(errors.New("plain")); ok || d != 0 {
		t.Errorf("RetryAfter(plain) = %s, %v", d, ok)
	}
}

func TestNextCancels(t *testing.T) {
	t.Parallel()
	transient := errors.New("connection reset")
	t.Run("MaxAttempts", func(t *testing.T) {
		p := Policy{Strategy: Fixed, Initial: time.Second, MaxAttempts: 3}
		for n := 1; n < 3; n++ {
			if d, ok := p.Next(n, transient, 0); !ok || d != time.Second {
				t.Fatalf("Next(%d) = %s, %v; want 1s, true", n, d, ok)
			}
		}
		for _, n := range []int{3, 4, math.MaxInt} {
			if _, ok := p.Next(n, transient, 0); ok {
				t.Fatalf("Next(%d) retries past MaxAttempts 3", n)
			}
		}
	})
	t.Run("MaxElapsed", func(t *testing.T) {
		p := Policy{Strategy: Fixed, Initial: 10 * time.Second, MaxElapsed: time.Minute}
		if d, ok := p.Next(1, transient, 50*time.Second); !ok || d != 10*time.Second {
			t.Fatalf("retry landing exactly on MaxElapsed refused: %s, %v", d, ok)
		}
		if _, ok := p.Next(1, transient, 50*time.Second+1); ok {
			t.Fatal("retry landing after MaxElapsed allowed")
		}
		if _, ok := p.Next(1, transient, 2*time.Hour); ok {
			t.Fatal("retry allowed with elapsed already past MaxElapsed")
		}
		if d, ok := p.Next(1, transient, -time.Hour); !ok || d != 10*time.Second {
			t.Fatalf("negative elapsed (clock step) not treated as 0: %s, %v", d, ok)
		}
	})
	t.Run("MaxElapsed with a saturated delay does not overflow", func(t *testing.T) {
		p := Policy{Strategy: Exponential, Initial: time.Second, MaxElapsed: time.Hour}
		if _, ok := p.Next(math.MaxInt, transient, 30*time.Minute); ok {
			t.Fatal("saturated delay accepted under MaxElapsed")
		}
	})
	t.Run("Retry-After beyond MaxElapsed gives up", func(t *testing.T) {
		p := Policy{Strategy: Fixed, Initial: time.Second, MaxElapsed: time.Minute}
		if _, ok := p.Next(1, serverBusy{2 * time.Minute}, 0); ok {
			t.Fatal("Retry-After past MaxElapsed accepted")
		}
	})
	t.Run("never gives up by default", func(t *testing.T) {
		p := Policy{Strategy: Exponential, Initial: 100 * ms, Max: 30 * time.Second}
		if d, ok := p.Next(math.MaxInt, transient, 100*365*24*time.Hour); !ok || d != 30*time.Second {
			t.Fatalf("Next = %s, %v; want 30s, true", d, ok)
		}
	})
	t.Run("permanent errors never retry", func(t *testing.T) {
		p := Policy{Strategy: Fixed, Initial: time.Second}
		for _, err := range []error{Permanent(transient), fmt.Errorf("handle: %w", Permanent(transient)), context.Canceled} {
			if _, ok := p.Next(1, err, 0); ok {
				t.Errorf("Next retries permanent %v", err)
			}
		}
	})
}

// notPermanent is a wrapper that has a Permanent method saying false, as
// psp.Error does for a 429: it must not hide a permanent cause.
type notPermanent struct{ err error }

func (e notPermanent) Error() string   { return "wrapped: " + e.err.Error() }
func (e notPermanent) Unwrap() error   { return e.err }
func (e notPermanent) Permanent() bool { return false }

func TestClassify(t *testing.T) {
	t.Parallel()
	base := errors.New("malformed payload")
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ClassTransient},
		{"plain", base, ClassTransient},
		{"Permanent", Permanent(base), ClassPermanent},
		{"Permanent wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", Permanent(base))), ClassPermanent},
		{"Permanent in a join", errors.Join(errors.New("x"), Permanent(base)), ClassPermanent},
		{"Permanent in a multi-%w", fmt.Errorf("%w and %w", errors.New("x"), Permanent(base)), ClassPermanent},
		{"permanent cause under a Permanent()=false wrapper", notPermanent{Permanent(base)}, ClassPermanent},
		{"Permanent()=false alone", notPermanent{base}, ClassTransient},
		{"context.Canceled", context.Canceled, ClassPermanent},
		{"context.Canceled wrapped", fmt.Errorf("query: %w", context.Canceled), ClassPermanent},
		{"deadline is an unknown outcome", context.DeadlineExceeded, ClassTransient},
		{"deadline wrapped", fmt.Errorf("call: %w", context.DeadlineExceeded), ClassTransient},
		{"Retry-After error", serverBusy{time.Second}, ClassTransient},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Classify(c.err); got != c.want {
				t.Errorf("Classify(%v) = %s, want %s", c.err, got, c.want)
			}
		})
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	p := Permanent(fmt.Errorf("decode: %w", base))
	if !errors.Is(p, base) || p.Error() != "decode: malformed payload" {
		t.Errorf("Permanent hides its cause: %v", p)
	}
	var sb serverBusy
	if !errors.As(Permanent(serverBusy{time.Second}), &sb) || sb.after != time.Second {
		t.Error("errors.As does not see through Permanent")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	valid := []Policy{
		{},
		{Strategy: Fixed, Initial: time.Second, MaxAttempts: 5},
		{Strategy: Incremental, Step: time.Second, Max: time.Minute},
		{Strategy: Exponential, Initial: 100 * ms, Max: 30 * time.Second, Jitter: 0.2},
		{Strategy: Exponential, Initial: time.Second, Multiplier: 1, Jitter: 1, MaxElapsed: time.Hour, MaxRetryAfter: time.Minute},
		{Strategy: Exponential, Initial: time.Second, Multiplier: 10},
	}
	for _, p := range valid {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	invalid := map[string]Policy{
		"unknown strategy":         {Strategy: Exponential + 1},
		"negative strategy":        {Strategy: -1},
		"negative Initial":         {Strategy: Fixed, Initial: -1},
		"negative Step":            {Strategy: Incremental, Step: -1},
		"negative Max":             {Strategy: Fixed, Max: -1},
		"negative MaxElapsed":      {MaxElapsed: -1},
		"negative MaxRetryAfter":   {MaxRetryAfter: -1},
		"negative MaxAttempts":     {MaxAttempts: -1},
		"negative Jitter":          {Jitter: -0.1},
		"Jitter above 1":           {Jitter: 1.5},
		"NaN Jitter":               {Jitter: math.NaN()},
		"Multiplier below 1":       {Strategy: Exponential, Initial: time.Second, Multiplier: 0.5},
		"Multiplier above 10":      {Strategy: Exponential, Initial: time.Second, Multiplier: 20},
		"NaN Multiplier":           {Strategy: Exponential, Initial: time.Second, Multiplier: math.NaN()},
		"exponential from zero":    {Strategy: Exponential},
		"forgotten Strategy":       {Initial: time.Second, Max: time.Minute},
		"Max on Immediate":         {Max: time.Minute},
		"Max below Initial":        {Strategy: Fixed, Initial: time.Minute, Max: time.Second},
		"infinite Multiplier":      {Strategy: Exponential, Initial: time.Second, Multiplier: math.Inf(1)},
		"negative Initial, capped": {Strategy: Exponential, Initial: -time.Second, Max: time.Second},
	}
	for name, p := range invalid {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: %+v validates", name, p)
		}
	}
}

func TestStrings(t *testing.T) {
	t.Parallel()
	for s, want := range map[Strategy]string{Immediate: "immediate", Fixed: "fixed", Incremental: "incremental", Exponential: "exponential", 9: "strategy(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", int(s), s.String(), want)
		}
	}
	if ClassPermanent.String() != "permanent" || ClassTransient.String() != "transient" {
		t.Error("Class.String")
	}
}

// The Do tests run in a synctest bubble: time is virtual, so hours of
// backoff take no wall time and elapsed times are exact.

func TestDoRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := Policy{Strategy: Exponential, Initial: time.Second, Max: time.Minute}
		calls := 0
		start := time.Now()
		err := p.Do(t.Context(), func(context.Context) error {
			calls++
			if calls <= 4 {
				return errors.New("transient")
			}
			return nil
		})
		if err != nil || calls != 5 {
			t.Fatalf("Do = %v after %d calls; want nil after 5", err, calls)
		}
		if got, want := time.Since(start), (1+2+4+8)*time.Second; got != want {
			t.Fatalf("waited %s, want %s", got, want)
		}
	})
}

func TestDoReturnsPermanentAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		refused := errors.New("card declined")
		calls := 0
		start := time.Now()
		err := Policy{Strategy: Fixed, Initial: time.Second}.Do(t.Context(), func(context.Context) error {
			calls++
			if calls == 2 {
				return fmt.Errorf("charge: %w", Permanent(refused))
			}
			return errors.New("transient")
		})
		if !errors.Is(err, refused) || errors.Is(err, ErrGaveUp) || calls != 2 {
			t.Fatalf("Do = %v after %d calls; want the permanent error after 2", err, calls)
		}
		if got := time.Since(start); got != time.Second {
			t.Fatalf("waited %s, want 1s (one retry, none after the refusal)", got)
		}
	})
}

func TestDoGivesUp(t *testing.T) {
	t.Parallel()
	last := errors.New("still down")
	t.Run("MaxAttempts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			calls := 0
			err := Policy{Strategy: Incremental, Initial: time.Second, Step: time.Second, MaxAttempts: 4}.Do(t.Context(), func(context.Context) error {
				calls++
				return fmt.Errorf("attempt %d: %w", calls, last)
			})
			if !errors.Is(err, ErrGaveUp) || !errors.Is(err, last) || calls != 4 {
				t.Fatalf("Do = %v after %d calls; want ErrGaveUp wrapping the last error after 4", err, calls)
			}
		})
	})
	t.Run("MaxElapsed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			calls := 0
			start := time.Now()
			err := Policy{Strategy: Fixed, Initial: 10 * time.Second, MaxElapsed: 35 * time.Second}.Do(t.Context(), func(context.Context) error {
				calls++
				return last
			})
			// Attempts at 0, 10, 20, 30 s; one at 40 s would pass 35 s.
			if !errors.Is(err, ErrGaveUp) || !errors.Is(err, last) || calls != 4 {
				t.Fatalf("Do = %v after %d calls; want ErrGaveUp after 4", err, calls)
			}
			if got := time.Since(start); got != 30*time.Second {
				t.Fatalf("gave up after %s, want 30s", got)
			}
		})
	})
}

func TestDoHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		start := time.Now()
		err := Policy{Strategy: Fixed, Initial: time.Second}.Do(t.Context(), func(context.Context) error {
			calls++
			if calls == 1 {
				return serverBusy{90 * time.Second}
			}
			return nil
		})
		if err != nil || calls != 2 {
			t.Fatalf("Do = %v after %d calls", err, calls)
		}
		if got := time.Since(start); got != 90*time.Second {
			t.Fatalf("waited %s, want the server's 90s", got)
		}
	})
}

func TestDoStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	last := errors.New("unavailable")
	t.Run("deadline during a wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			calls := 0
			start := time.Now()
			err := Policy{Strategy: Fixed, Initial: time.Hour}.Do(ctx, func(context.Context) error {
				calls++
				return last
			})
			if !errors.Is(err, ErrGaveUp) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, last) || calls != 1 {
				t.Fatalf("Do = %v after %d calls", err, calls)
			}
			if got := time.Since(start); got != 5*time.Second {
				t.Fatalf("returned after %s, want at the 5s deadline, not after the 1h wait", got)
			}
		})
	})
	t.Run("cancel during a wait, from another goroutine", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				done <- Policy{Strategy: Exponential, Initial: time.Minute}.Do(ctx, func(context.Context) error { return last })
			}()
			synctest.Wait() // Do is parked in its first wait
			select {
			case err := <-done:
				t.Fatalf("Do returned before cancel: %v", err)
			default:
			}
			cancel()
			err := <-done
			if !errors.Is(err, ErrGaveUp) || !errors.Is(err, context.Canceled) || !errors.Is(err, last) {
				t.Fatalf("Do = %v", err)
			}
		})
	})
	t.Run("immediate strategy still stops", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		err := Policy{}.Do(ctx, func(context.Context) error {
			calls++
			if calls == 3 {
				cancel()
			}
			return last // a fn that ignores its ctx
		})
		if !errors.Is(err, context.Canceled) || calls != 3 {
			t.Fatalf("Do = %v after %d calls; want Canceled after 3", err, calls)
		}
	})
	t.Run("fn's own Canceled is permanent", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		calls := 0
		err := Policy{Strategy: Fixed, Initial: time.Hour}.Do(ctx, func(ctx context.Context) error {
			calls++
			return fmt.Errorf("query: %w", ctx.Err())
		})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrGaveUp) || calls != 1 {
			t.Fatalf("Do = %v after %d calls", err, calls)
		}
	})
}
