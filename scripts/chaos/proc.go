package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process of the harness (nats-server, pspsim, a paypipe
// serve process): started with a fixed command line and environment, its
// output appended to a log file, killed and restarted by the nemesis. Every
// start is a new incarnation; counters scraped from a process are kept per
// incarnation, because a kill resets them.
//
// An exit the harness did not cause (a crash, a refusal to start while
// PostgreSQL is down) is counted and, while the supervisor runs, followed by
// a restart after a short pause, as systemd would do in production.
type proc struct {
	name    string
	path    string
	args    []string
	env     []string
	logPath string
	log     *slog.Logger
	// ready probes the process once; nil means "started is ready".
	ready func(ctx context.Context) error

	mu          sync.Mutex
	cmd         *exec.Cmd
	exited      chan struct{} // closed when the current incarnation exits
	incarnation int
	// held is set while the harness has the process down on purpose, so the
	// supervisor does not restart it.
	held bool
	// expected marks the current incarnation's exit as caused by the harness.
	expected   bool
	unexpected int
	stopped    bool // SIGSTOP in force
	envExtra   []string
	exits      []exitRecord
}

// exitRecord describes an exit the harness did not cause.
type exitRecord struct {
	Proc        string  `json:"proc"`
	Incarnation int     `json:"incarnation"`
	UptimeS     float64 `json:"uptime_s"`
	Err         string  `json:"err"`
	// LastLog is the end of the child's log: why it stopped, usually.
	LastLog []string `json:"last_log,omitempty"`
}

// logTail returns the last n non-empty lines of the file's last 4 KiB.
func logTail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(0, st.Size()-4096)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, truncate([]byte(l), 400))
		}
	}
	return out[max(0, len(out)-n):]
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked()
}

func (p *proc) startLocked() error {
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.name)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.name, err)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(append(append([]string{}, baseEnv()...), p.env...), p.envExtra...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	p.incarnation++
	fmt.Fprintf(f, "\n=== chaos: start %s incarnation %d at %s\n", p.name, p.incarnation, time.Now().UTC().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	p.cmd, p.expected, p.stopped = cmd, false, false
	exited := make(chan struct{})
	p.exited = exited
	started, inc := time.Now(), p.incarnation
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.expected {
			p.unexpected++
			if len(p.exits) < 20 {
				p.exits = append(p.exits, exitRecord{Proc: p.name, Incarnation: inc,
					UptimeS: round2(time.Since(started).Seconds()), Err: fmt.Sprint(err), LastLog: logTail(p.logPath, 3)})
			}
			p.log.Warn("child exited on its own", "proc", p.name, "incarnation", inc, "err", err, "log", p.logPath)
		}
		p.cmd = nil
		close(exited)
	}()
	return nil
}

// kill sends SIGKILL and waits for the exit. It holds the process down
// until start.
func (p *proc) kill(ctx context.Context) error { return p.halt(ctx, syscall.SIGKILL) }

// term stops the process gracefully (SIGTERM), escalating to SIGKILL after
// 30 s, and holds it down until start.
func (p *proc) term(ctx context.Context) error { return p.halt(ctx, syscall.SIGTERM) }

func (p *proc) halt(ctx context.Context, sig syscall.Signal) error {
	p.mu.Lock()
	p.held = true
	cmd, exited := p.cmd, p.exited
	if cmd == nil {
		p.mu.Unlock()
		return nil
	}
	p.expected = true
	if p.stopped {
		// A stopped process does not act on SIGTERM until continued.
		_ = cmd.Process.Signal(syscall.SIGCONT)
		p.stopped = false
	}
	err := cmd.Process.Signal(sig)
	p.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: signal %s: %w", p.name, sig, err)
	}
	grace := time.NewTimer(30 * time.Second)
	defer grace.Stop()
	select {
	case <-exited:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: did not exit after SIGKILL", p.name)
	}
}

// resume releases a hold and starts the process again.
func (p *proc) resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = false
	if p.cmd != nil {
		return nil
	}
	return p.startLocked()
}

// pause and cont send SIGSTOP and SIGCONT: a process frozen mid-handler.
func (p *proc) pause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s: not running", p.name)
	}
	p.stopped = true
	return p.cmd.Process.Signal(syscall.SIGSTOP)
}

func (p *proc) cont() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || !p.stopped {
		return nil
	}
	p.stopped = false
	return p.cmd.Process.Signal(syscall.SIGCONT)
}

// supervise restarts the process after an exit the harness did not cause,
// until ctx ends. Restarts are spaced by a second: a process that cannot
// start (PostgreSQL or NATS down) is retried, not spun. While the harness
// holds the process down it checks again every second.
func (p *proc) supervise(ctx context.Context) {
	for {
		p.mu.Lock()
		exited := p.exited
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-exited:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		p.mu.Lock()
		if !p.held && p.cmd == nil {
			if err := p.startLocked(); err != nil {
				p.log.Warn("restart failed", "proc", p.name, "err", err)
			}
		}
		p.mu.Unlock()
	}
}

// awaitReady polls the readiness probe until it passes or timeout.
func (p *proc) awaitReady(ctx context.Context, timeout time.Duration) error {
	if p.ready == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		last = p.ready(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w (log: %s)", p.name, timeout, last, p.logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *proc) current() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.incarnation
}

func (p *proc) unexpectedExits() (int, []exitRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unexpected, append([]exitRecord{}, p.exits...)
}

// baseEnv is the harness's environment minus the variables that would point
// a child at the developer's database or broker.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "DATABASE_URL", "NATS_URL":
			continue
		default:
			if strings.HasPrefix(k, "PAYPIPE_") || strings.HasPrefix(k, "PSPSIM_") {
				continue
			}
		}
		out = append(out, kv)
	}
	return out
}
