package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// perfRecording is a system-wide `perf record` (so both paypipe and
// PostgreSQL's backends are in it) running during one scenario. It is
// evidence for where the CPU goes, not a figure: perf itself costs a few
// percent of the CPU it watches.
type perfRecording struct {
	cmd  *exec.Cmd
	dir  string
	data string
	pid  int // paypipe's
	done chan struct{}
}

func startPerf(dir string, childPID int) (*perfRecording, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &perfRecording{dir: dir, data: filepath.Join(dir, "perf.data"), done: make(chan struct{}), pid: childPID}
	log, err := os.Create(filepath.Join(dir, "perf-record.log"))
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command("perf", "record", "-a", "-g", "-F", "199", "-o", p.data)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("perf record: %w", err)
	}
	go func() {
		_ = p.cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// stop ends the recording and summarises it: CPU samples per command;
// paypipe's functions by inclusive time (Go keeps frame pointers, so the
// call graphs are whole: "children" shows which component the time goes
// to); postgres's hottest symbols (all postgres processes on the machine).
// Percentages are of all samples on the machine. The full reports are
// written next to perf.data.
func (p *perfRecording) stop(ctx context.Context) *Profile {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	prof := &Profile{Dir: p.dir}
	report := func(name string, limit int, args ...string) []string {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		args = append([]string{"report", "-i", p.data, "--stdio", "-g", "none"}, args...)
		out, err := exec.CommandContext(rctx, "perf", args...).Output()
		if err != nil {
			return []string{"perf report: " + err.Error()}
		}
		_ = os.WriteFile(filepath.Join(p.dir, name), out, 0o644)
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") || !strings.Contains(l, "%") {
				continue
			}
			lines = append(lines, strings.Join(strings.Fields(l), " "))
			if len(lines) == limit {
				break
			}
		}
		return lines
	}
	prof.ByCommand = report("perf-by-command.txt", 8, "--no-children", "--sort", "comm", "--percent-limit", "0.5")
	prof.PaypipeTop = report("perf-paypipe.txt", 40, "--pid", strconv.Itoa(p.pid), "--children", "--sort", "sym", "--percent-limit", "1.5")
	prof.PostgresTop = report("perf-postgres.txt", 15, "--no-children", "--comm", "postgres", "--sort", "dso,sym", "--percent-limit", "0.3")
	return prof
}
