package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/services/pspsim"
)

// cluster is everything the harness runs, each as a child process on
// loopback: a private PostgreSQL cluster, a nats-server with a file store
// (sync_interval always), the PSP simulator, and paypipe split in two
// processes that are killed independently:
//
//	A = paypipe serve payment executor payout   (the API, the PSP callers, their relays)
//	B = paypipe serve ledger wallet reconciler  (the money consumers and their relays)
//
// Ports are picked once and kept across restarts, so clients, the
// simulator's webhook URL and the relays' NATS URL stay valid.
type cluster struct {
	cfg  Config
	log  *slog.Logger
	base string // work directory: data, logs, binaries

	paypipe string // built binary
	pg      *postgres
	nats    *proc
	psp     *proc
	a, b    *proc
	procs   []*proc

	natsURL  string
	pspURL   string
	apiURL   string // process A
	bURL     string // process B (metrics only)
	apiKey   string // pspsim API key (paypipe's key at the PSP)
	adminKey string // pspsim admin key
	secret   string // webhook signing secret
	http     *http.Client

	scrapes *scraper
	stopSup context.CancelFunc
	supWG   sync.WaitGroup
}

func randomToken(prefix string) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the child binds it; on this machine that is rare enough,
// and a start that fails that way fails loudly.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newCluster prepares the work directory, builds paypipe and picks ports;
// start starts everything.
func newCluster(ctx context.Context, cfg Config, log *slog.Logger) (*cluster, error) {
	c := &cluster{cfg: cfg, log: log, http: &http.Client{Timeout: 15 * time.Second}}
	var err error
	if c.base, err = os.MkdirTemp(cfg.WorkDir, "paypipe-chaos-"); err != nil {
		return nil, err
	}
	// The postgres OS user must traverse it (the harness may run as root).
	if err := os.Chmod(c.base, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(c.base, "logs"), 0o755); err != nil {
		return nil, err
	}
	ports := make([]int, 6)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	if c.pg, err = newPostgres(c.base, ports[0]); err != nil {
		return nil, err
	}
	for _, t := range []struct {
		dst    *string
		prefix string
	}{{&c.apiKey, "sk_chaos_"}, {&c.adminKey, "ak_chaos_"}, {&c.secret, "whsec_chaos_"}} {
		if *t.dst, err = randomToken(t.prefix); err != nil {
			return nil, err
		}
	}

	log.Info("building paypipe", "dir", c.base)
	c.paypipe = filepath.Join(c.base, "paypipe")
	build := exec.CommandContext(ctx, "go", "build", "-o", c.paypipe, "./cmd/paypipe")
	build.Dir = cfg.Repo
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/paypipe: %w: %s", err, out)
	}
	natsBin, err := goToolPath(ctx, cfg.Repo, "nats-server")
	if err != nil {
		return nil, err
	}

	c.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", ports[1])
	c.pspURL = fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	c.apiURL = fmt.Sprintf("http://127.0.0.1:%d", ports[3])
	c.bURL = fmt.Sprintf("http://127.0.0.1:%d", ports[4])
	natsConf := filepath.Join(c.base, "nats.conf")
	conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nserver_name: \"chaos\"\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n",
		ports[1], filepath.Join(c.base, "nats"))
	if err := os.WriteFile(natsConf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logf := func(name string) string { return filepath.Join(c.base, "logs", name+".log") }
	c.nats = &proc{name: "nats-server", path: natsBin, args: []string{"-c", natsConf}, logPath: logf("nats"), log: log,
		ready: func(ctx context.Context) error { return pingNATS(ctx, c.natsURL) }}
	common := []string{"DATABASE_URL=" + c.pg.url(), "PAYPIPE_LOG_LEVEL=" + cfg.ChildLogLevel}
	c.psp = &proc{name: "pspsim", path: c.paypipe, args: []string{"pspsim"}, logPath: logf("pspsim"), log: log,
		env: append(append([]string{}, common...),
			"PSPSIM_ADDR="+strings.TrimPrefix(c.pspURL, "http://"),
			"PSPSIM_API_KEY="+c.apiKey, "PSPSIM_ADMIN_KEY="+c.adminKey,
			"PSPSIM_WEBHOOK_URL="+c.apiURL+"/v1/psp/webhooks", "PSPSIM_WEBHOOK_SECRETS="+c.secret,
			fmt.Sprintf("PSPSIM_SEED=%d", cfg.Seed)),
		ready: func(ctx context.Context) error { return c.httpOK(ctx, c.pspURL+"/readyz") }}
	serveEnv := func(addr, data string) []string {
		return append(append([]string{}, common...), "NATS_URL="+c.natsURL, "PAYPIPE_RELAY_MODE=atomic-batch",
			"PAYPIPE_HTTP_ADDR="+strings.TrimPrefix(addr, "http://"), "PAYPIPE_DATA_DIR="+filepath.Join(c.base, data))
	}
	c.a = &proc{name: "A (payment executor payout)", path: c.paypipe, args: []string{"serve", "payment", "executor", "payout"}, logPath: logf("a"), log: log,
		// Payouts are requested by the harness only (payouts.go), never by
		// a schedule that could fire mid-run.
		env: append(serveEnv(c.apiURL, "data-a"), "PAYPIPE_PSP_URL="+c.pspURL, "PAYPIPE_PSP_API_KEY="+c.apiKey,
			"PAYPIPE_PSP_WEBHOOK_SECRETS="+c.secret, "PAYPIPE_PAYOUT_SCHEDULE=off", "PAYPIPE_PAYOUT_RESOLVE_AFTER=3s"),
		ready: func(ctx context.Context) error { return c.httpOK(ctx, c.apiURL+"/readyz") }}
	c.b = &proc{name: "B (ledger wallet reconciler)", path: c.paypipe, args: []string{"serve", "ledger", "wallet", "reconciler"}, logPath: logf("b"), log: log,
		// The reconciler asks the PSP about charges the ledger lacks; its
		// nightly run is off: the harness reconciles (F21, I8).
		env: append(serveEnv(c.bURL, "data-b"), "PAYPIPE_PSP_URL="+c.pspURL, "PAYPIPE_PSP_API_KEY="+c.apiKey,
			"PAYPIPE_PSP_WEBHOOK_SECRETS="+c.secret, "PAYPIPE_RECON_AT=off"),
		ready: func(ctx context.Context) error { return c.httpOK(ctx, c.bURL+"/readyz") }}
	c.procs = []*proc{c.nats, c.psp, c.a, c.b}
	c.scrapes = newScraper(c)
	return c, nil
}

func goToolPath(ctx context.Context, repo, tool string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", tool)
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n %s: %w", tool, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// start brings the cluster up in dependency order and starts supervising.
func (c *cluster) start(ctx context.Context) error {
	c.log.Info("starting PostgreSQL", "port", c.pg.port)
	if err := c.pg.init(ctx); err != nil {
		return err
	}
	for _, p := range c.procs {
		if err := p.start(); err != nil {
			return err
		}
		if err := p.awaitReady(ctx, 60*time.Second); err != nil {
			return err
		}
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.stopSup = cancel
	for _, p := range c.procs {
		c.supWG.Go(func() { p.supervise(sctx) })
	}
	c.supWG.Go(func() { c.scrapes.run(sctx) })
	return nil
}

// close stops every child (paypipe first, so nothing is left writing) and
// the PostgreSQL cluster. It is safe to call on a partly started cluster and
// from a deferred call after a panic.
func (c *cluster) close() {
	if c.stopSup != nil {
		c.stopSup()
		c.supWG.Wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, p := range []*proc{c.a, c.b, c.psp, c.nats} {
		if p != nil {
			if err := p.term(ctx); err != nil {
				c.log.Warn("stop", "proc", p.name, "err", err)
			}
		}
	}
	if c.pg != nil {
		if err := c.pg.shutdown(ctx); err != nil {
			c.log.Warn("stop PostgreSQL", "err", err)
		}
	}
}

// awaitAllReady waits until every child answers its readiness probe.
func (c *cluster) awaitAllReady(ctx context.Context, timeout time.Duration) error {
	if err := awaitCond(ctx, timeout, func(ctx context.Context) error { return c.pg.ping(ctx) }); err != nil {
		return fmt.Errorf("PostgreSQL: %w", err)
	}
	for _, p := range c.procs {
		if err := p.awaitReady(ctx, timeout); err != nil {
			return err
		}
	}
	return nil
}

func awaitCond(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := f(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s: %w", timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *cluster) httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, res.StatusCode)
	}
	return nil
}

func pingNATS(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.AccountInfo(ctx)
	return err
}

// paypipeCmd runs a paypipe CLI command against the cluster and returns its
// stdout. A non-zero exit is an error unless allowExit1 (verify exits 1 on
// violations, after printing its report).
func (c *cluster) paypipeCmd(ctx context.Context, timeout time.Duration, allowExit1 bool, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.paypipe, args...)
	cmd.Env = c.cliEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !(allowExit1 && errors.As(err, &exit) && exit.ExitCode() == 1) {
		return stdout.Bytes(), fmt.Errorf("paypipe %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// cliEnv is the environment of a paypipe CLI command: the run's database,
// broker and PSP (recon run downloads the settlement file).
func (c *cluster) cliEnv() []string {
	return append(baseEnv(), "DATABASE_URL="+c.pg.url(), "NATS_URL="+c.natsURL, "PAYPIPE_LOG_LEVEL=warn",
		"PAYPIPE_PSP_URL="+c.pspURL, "PAYPIPE_PSP_API_KEY="+c.apiKey, "PAYPIPE_PSP_WEBHOOK_SECRETS="+c.secret,
		// Small chunks: a run of a few hundred lines commits several times,
		// so F21's kill can land between chunks, not only before or after.
		"PAYPIPE_RECON_CHUNK_LINES=50")
}

// setFaults replaces the simulator's faults through its admin API.
func (c *cluster) setFaults(ctx context.Context, f pspsim.Faults) error {
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	_, err = c.admin(ctx, http.MethodPost, "/admin/faults", body)
	return err
}

// faultsView reads the simulator's faults and its injected counts.
func (c *cluster) faultsView(ctx context.Context) (pspsim.FaultsView, error) {
	var v pspsim.FaultsView
	b, err := c.admin(ctx, http.MethodGet, "/admin/faults", nil)
	if err != nil {
		return v, err
	}
	return v, json.Unmarshal(b, &v)
}

func (c *cluster) admin(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.pspURL+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.adminKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pspsim %s %s: %d %s", method, path, res.StatusCode, b)
	}
	return b, nil
}

// charges reads the simulator's whole charge log, page by page.
func (c *cluster) charges(ctx context.Context) ([]pspsim.Charge, error) {
	var out []pspsim.Charge
	after := int64(0)
	for range 100_000 { // 1000 per page: bounded far above any run's size
		b, err := c.admin(ctx, http.MethodGet, fmt.Sprintf("/admin/charges?limit=1000&starting_after=%d", after), nil)
		if err != nil {
			return nil, err
		}
		var page pspsim.ChargesPage
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Charges...)
		if !page.HasMore || len(page.Charges) == 0 {
			return out, nil
		}
		after = page.Charges[len(page.Charges)-1].ID
	}
	return nil, errors.New("charge log: too many pages")
}

// pspPayouts reads the simulator's whole payout log, page by page.
func (c *cluster) pspPayouts(ctx context.Context) ([]pspsim.PayoutRecord, error) {
	var out []pspsim.PayoutRecord
	after := int64(0)
	for range 100_000 {
		b, err := c.admin(ctx, http.MethodGet, fmt.Sprintf("/admin/payouts?limit=1000&starting_after=%d", after), nil)
		if err != nil {
			return nil, err
		}
		var page pspsim.PayoutRecordsPage
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Payouts...)
		if !page.HasMore || len(page.Payouts) == 0 {
			return out, nil
		}
		after = page.Payouts[len(page.Payouts)-1].Seq
	}
	return nil, errors.New("payout log: too many pages")
}

// pspRefunds reads the simulator's whole refund log, page by page.
func (c *cluster) pspRefunds(ctx context.Context) ([]pspsim.RefundRecord, error) {
	var out []pspsim.RefundRecord
	after := int64(0)
	for range 100_000 {
		b, err := c.admin(ctx, http.MethodGet, fmt.Sprintf("/admin/refunds?limit=1000&starting_after=%d", after), nil)
		if err != nil {
			return nil, err
		}
		var page pspsim.RefundRecordsPage
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Refunds...)
		if !page.HasMore || len(page.Refunds) == 0 {
			return out, nil
		}
		after = page.Refunds[len(page.Refunds)-1].Seq
	}
	return nil, errors.New("refund log: too many pages")
}

// settlementFile downloads the simulator's settlement file of a day, as
// the reconciler does (GET /v1/settlements/{date}, the API key).
func (c *cluster) settlementFile(ctx context.Context, day string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.pspURL+"/v1/settlements/"+day, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("settlement file %s: %d %s", day, res.StatusCode, truncate(b, 200))
	}
	return b, nil
}
