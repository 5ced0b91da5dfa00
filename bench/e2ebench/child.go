package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/paypipe/paypipe/internal/pg"
)

const (
	// startTimeout bounds the child's start: migrations, the embedded
	// broker, stream declarations, consumers subscribing.
	startTimeout = 90 * time.Second
	// stopTimeout is how long the child gets after SIGTERM before SIGKILL;
	// serve itself gives its shutdown 30 s.
	stopTimeout = 35 * time.Second
	// readyLine is what serve prints once everything is started.
	readyLine = "paypipe: serving"
)

// buildPaypipe builds ./cmd/paypipe of the module the bench runs in.
func buildPaypipe(ctx context.Context, out string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", errors.New("not inside the paypipe module: run from the repository or pass -bin")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/paypipe")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/paypipe: %w\n%s", err, b)
	}
	return out, nil
}

// freshDatabase creates an empty database next to the one base names and
// returns its URL, its name and a function that drops it.
func freshDatabase(ctx context.Context, base, prefix string) (string, string, func(), error) {
	return pg.ScratchDatabase(ctx, base, prefix, func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "e2ebench: "+f+"\n", a...)
	})
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the child listens; the child then fails to start, loudly.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

type childConfig struct {
	Bin, DatabaseURL, DataDir, RelayMode, LogPath string
	Log                                           io.Writer
}

// child is a running `paypipe serve`.
type child struct {
	cmd     *exec.Cmd
	env     []string
	apiBase string
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process has exited
	// stdoutDone is closed when the child's stdout is drained: Wait must
	// not be called before (it closes the pipe).
	stdoutDone chan struct{}
	waitErr    error
	ready      chan struct{} // closed when serve printed readyLine
	stopped    sync.Once
	stopErr    error
}

// childEnv is the environment of every paypipe command the bench runs: the
// bench's own, minus anything that would point paypipe elsewhere (an
// external broker or PSP, another database), plus the bench's settings.
func childEnv(c childConfig, httpAddr, simAddr string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "DATABASE_URL" || k == "NATS_URL" || strings.HasPrefix(k, "PAYPIPE_") || strings.HasSuffix(k, "_DATABASE_URL") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"DATABASE_URL="+c.DatabaseURL,
		"PAYPIPE_HTTP_ADDR="+httpAddr,
		"PAYPIPE_PSPSIM_ADDR="+simAddr,
		"PAYPIPE_DATA_DIR="+c.DataDir,
		"PAYPIPE_LOG_LEVEL=warn",
		"PAYPIPE_RELAY_MODE="+c.RelayMode,
	)
}

// startChild starts `paypipe serve` and waits until it has started and
// /readyz answers 200. On error the child is stopped.
func startChild(ctx context.Context, c childConfig) (_ *child, err error) {
	httpAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	simAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(c.LogPath)
	if err != nil {
		return nil, err
	}
	ch := &child{
		env: childEnv(c, httpAddr, simAddr), apiBase: "http://" + httpAddr, logPath: c.LogPath, logFile: logFile,
		done: make(chan struct{}), ready: make(chan struct{}), stdoutDone: make(chan struct{}),
	}
	// Not CommandContext: the child is stopped by stop (SIGTERM first), not
	// killed when a context ends.
	ch.cmd = exec.Command(c.Bin, "serve")
	ch.cmd.Env = ch.env
	ch.cmd.Stderr = logFile
	ch.cmd.SysProcAttr = childSysProcAttr()
	stdout, err := ch.cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := ch.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start paypipe serve: %w", err)
	}
	go ch.watchStdout(stdout, c.Log)
	go func() {
		<-ch.stdoutDone
		ch.waitErr = ch.cmd.Wait()
		logFile.Close()
		close(ch.done)
	}()
	defer func() {
		if err != nil {
			_ = ch.stop()
		}
	}()

	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	select {
	case <-ch.ready:
	case <-ch.done:
		return nil, fmt.Errorf("paypipe serve exited while starting (%v); its log:\n%s", ch.waitErr, strings.Join(ch.logTail(20), "\n"))
	case <-sctx.Done():
		return nil, fmt.Errorf("paypipe serve did not start within %s; its log:\n%s", startTimeout, strings.Join(ch.logTail(20), "\n"))
	}
	if err := ch.awaitReady(sctx); err != nil {
		return nil, err
	}
	return ch, nil
}

// watchStdout closes ready at serve's start-up line and passes the rest on.
func (ch *child) watchStdout(r io.Reader, log io.Writer) {
	defer close(ch.stdoutDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := false
	for sc.Scan() {
		line := sc.Text()
		if !seen && strings.HasPrefix(line, readyLine) {
			seen = true
			close(ch.ready)
		}
		if log != nil {
			fmt.Fprintln(log, "e2ebench: child:", line)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// awaitReady polls /readyz until it answers 200.
func (ch *child) awaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ch.apiBase+"/readyz", nil)
		if err != nil {
			return err
		}
		res, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", res.StatusCode, bytes.TrimSpace(b))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("/readyz: %s: %w", last, ctx.Err())
		case <-ch.done:
			return fmt.Errorf("paypipe serve exited (%v)", ch.waitErr)
		case <-tick.C:
		}
	}
}

func (ch *child) pid() int { return ch.cmd.Process.Pid }

// stop sends SIGTERM, waits up to stopTimeout, then kills. An exit other
// than a clean one after SIGTERM is an error: serve must shut down cleanly.
func (ch *child) stop() error {
	ch.stopped.Do(func() {
		select {
		case <-ch.done:
			ch.stopErr = fmt.Errorf("paypipe serve had exited before the bench stopped it: %v", ch.waitErr)
			return
		default:
		}
		if err := ch.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			ch.stopErr = fmt.Errorf("SIGTERM paypipe serve: %w", err)
		}
		t := time.NewTimer(stopTimeout)
		defer t.Stop()
		select {
		case <-ch.done:
			if ch.waitErr != nil {
				ch.stopErr = errors.Join(ch.stopErr, fmt.Errorf("paypipe serve exited after SIGTERM: %w; its log:\n%s", ch.waitErr, strings.Join(ch.logTail(10), "\n")))
			}
		case <-t.C:
			_ = ch.cmd.Process.Kill()
			k := time.NewTimer(5 * time.Second)
			defer k.Stop()
			select {
			case <-ch.done:
			case <-k.C:
			}
			ch.stopErr = errors.Join(ch.stopErr, fmt.Errorf("paypipe serve did not stop within %s of SIGTERM: killed", stopTimeout))
		}
	})
	return ch.stopErr
}

// logLines counts the lines the child has logged (warnings and errors: it
// runs at PAYPIPE_LOG_LEVEL=warn).
func (ch *child) logLines() int {
	b, err := os.ReadFile(ch.logPath)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\n"))
}

// logTail is the child's last n log lines.
func (ch *child) logTail(n int) []string {
	b, err := os.ReadFile(ch.logPath)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 600 {
			lines[i] = l[:600] + "…"
		}
	}
	return lines
}

// createMerchant runs `paypipe merchants create` and returns the API key.
func createMerchant(ctx context.Context, bin string, env []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "merchants", "create", "--name", "bench", "-o", "json")
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("paypipe merchants create: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	// The shape of cmd/paypipe's createdMerchant.
	var created struct {
		Merchant struct {
			ID string `json:"id"`
		} `json:"merchant"`
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(out, &created); err != nil {
		return "", fmt.Errorf("paypipe merchants create: decode %q: %w", out, err)
	}
	if created.APIKey == "" || created.Merchant.ID == "" {
		return "", fmt.Errorf("paypipe merchants create: no merchant id or API key in %q", out)
	}
	return created.APIKey, nil
}
