package main

import (
	"cmp"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/internal/pg"
)

// queryTimeout bounds each of the bench's own queries.
const queryTimeout = 30 * time.Second

// benchDB is the bench's one connection to the bench database. One plain
// connection, not a pool, and QueryExecModeExec: every query is exactly one
// transaction (no prepare round trips, no pool pings), so the bench's own
// share of xact_commit is the number of queries it ran.
type benchDB struct {
	mu   sync.Mutex
	conn *pgx.Conn
	own  atomic.Int64 // queries run on conn: each one transaction
}

func openBenchDB(ctx context.Context, url string) (*benchDB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.RuntimeParams["application_name"] = "e2ebench"
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &benchDB{conn: conn}, nil
}

func (d *benchDB) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.conn.Close(ctx)
}

// query runs one query and hands each row to scan.
func (d *benchDB) query(ctx context.Context, scan func(pgx.Rows) error, sql string, args ...any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	d.own.Add(1)
	rows, err := d.conn.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// outboxSchemas lists the schemas with an outbox table (one per service).
func (d *benchDB) outboxSchemas(ctx context.Context) ([]string, error) {
	var out []string
	err := d.query(ctx, func(r pgx.Rows) error {
		var s string
		if err := r.Scan(&s); err != nil {
			return err
		}
		out = append(out, s)
		return nil
	}, `SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox' ORDER BY 1`)
	if err == nil && len(out) == 0 {
		err = errors.New("no outbox table in the bench database")
	}
	return out, err
}

// openCheckouts counts checkouts neither completed nor failed (the partial
// index checkouts_open_idx makes this cheap).
func (d *benchDB) openCheckouts(ctx context.Context) (int, error) {
	var n int
	err := d.query(ctx, func(r pgx.Rows) error { return r.Scan(&n) },
		`SELECT count(*) FROM payment.checkouts WHERE status NOT IN ('failed', 'completed')`)
	return n, err
}

// transitions is one checkout's status history: when it entered each
// status (`at` is now() of the transaction that moved it).
type transitions map[string]time.Time

// checkoutTransitions returns the status history of each checkout id.
func (d *benchDB) checkoutTransitions(ctx context.Context, ids []string) (map[string]transitions, error) {
	out := make(map[string]transitions, len(ids))
	const chunk = 10_000
	for len(ids) > 0 {
		part := ids[:min(chunk, len(ids))]
		ids = ids[len(part):]
		err := d.query(ctx, func(r pgx.Rows) error {
			var id, to string
			var at time.Time
			if err := r.Scan(&id, &to, &at); err != nil {
				return err
			}
			t := out[id]
			if t == nil {
				t = transitions{}
				out[id] = t
			}
			if prev, ok := t[to]; !ok || at.Before(prev) {
				t[to] = at
			}
			return nil
		}, `SELECT object_id::text, to_status, at FROM payment.status_transitions
WHERE object_type = 'checkout' AND object_id = ANY($1::uuid[])`, part)
		if err != nil {
			return nil, fmt.Errorf("read checkout transitions: %w", err)
		}
	}
	return out, nil
}

// outboxRows counts outbox rows per "schema subject".
func (d *benchDB) outboxRows(ctx context.Context, schemas []string) (map[string]int64, error) {
	parts := make([]string, len(schemas))
	for i, s := range schemas {
		parts[i] = fmt.Sprintf(`SELECT %s, subject, count(*) FROM %s.outbox GROUP BY subject`,
			quoteLiteral(s), pgx.Identifier{s}.Sanitize())
	}
	out := map[string]int64{}
	err := d.query(ctx, func(r pgx.Rows) error {
		var schema, subject string
		var n int64
		if err := r.Scan(&schema, &subject, &n); err != nil {
			return err
		}
		out[schema+" "+subject] = n
		return nil
	}, strings.Join(parts, " UNION ALL "))
	return out, err
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// tableWrites is rows inserted + updated + deleted per table, from
// pg_stat_user_tables (flushed with the same delay as pg_stat_database).
func (d *benchDB) tableWrites(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := d.query(ctx, func(r pgx.Rows) error {
		var name string
		var n int64
		if err := r.Scan(&name, &n); err != nil {
			return err
		}
		out[name] = n
		return nil
	}, `SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables`)
	return out, err
}

type commitCount struct{ commit, rollback int64 }

// commits reads the bench database's counters in pg_stat_database over the
// admin connection (another database), so the read is not itself counted.
func (e *modeEnv) commits(ctx context.Context) (commitCount, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var c commitCount
	err := e.admin.QueryRow(ctx, `SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1`, e.dbName).
		Scan(&c.commit, &c.rollback)
	if err != nil {
		return c, time.Time{}, fmt.Errorf("read pg_stat_database: %w", err)
	}
	return c, time.Now(), nil
}

// snap is the counters a scenario is measured by.
type snap struct {
	at       time.Time
	commits  commitCount
	own      int64
	outbox   map[string]int64
	tables   map[string]int64
	cpu      cpuSample
	logLines int
}

func (e *modeEnv) snapshot(ctx context.Context) (snap, error) {
	var s snap
	var err error
	if s.commits, s.at, err = e.commits(ctx); err != nil {
		return s, err
	}
	s.own = e.db.own.Load()
	if s.outbox, err = e.db.outboxRows(ctx, e.outboxSchemas); err != nil {
		return s, fmt.Errorf("count outbox rows: %w", err)
	}
	if s.tables, err = e.db.tableWrites(ctx); err != nil {
		return s, fmt.Errorf("read pg_stat_user_tables: %w", err)
	}
	s.cpu = sampleCPU(e.child.pid())
	s.logLines = e.child.logLines()
	return s, nil
}

// cpuSample is CPU time so far, in clock ticks (USER_HZ, 100 on Linux).
type cpuSample struct {
	at                    time.Time
	ok                    bool
	total, idle, iowait   uint64 // the machine, all cores
	child, postgres, self uint64 // processes: user + system
}

const clockTicks = 100

func sampleCPU(childPID int) cpuSample {
	s := cpuSample{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s
	}
	for i := 1; i <= 8; i++ {
		v, _ := strconv.ParseUint(f[i], 10, 64)
		s.total += v
		switch i {
		case 4:
			s.idle = v
		case 5:
			s.iowait = v
		}
	}
	s.ok = true
	s.self, _, _ = procTicks("self")
	s.child, _, _ = procTicks(strconv.Itoa(childPID))
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		if en.Name()[0] < '0' || en.Name()[0] > '9' {
			continue
		}
		t, comm, ok := procTicks(en.Name())
		if ok && comm == "postgres" {
			s.postgres += t
		}
	}
	return s
}

// procTicks is a process's user + system time and its command name.
func procTicks(pid string) (uint64, string, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, "", false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return 0, "", false
	}
	comm := s[open+1 : closing]
	f := strings.Fields(s[closing+1:])
	// After the command: state(0) ppid … utime(11) stime(12).
	if len(f) < 13 {
		return 0, "", false
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st, comm, true
}

func cpuFigures(a, b cpuSample) CPUFigures {
	secs := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || secs <= 0 || b.total <= a.total {
		return CPUFigures{}
	}
	cores := func(t0, t1 uint64) float64 {
		if t1 < t0 {
			return 0
		}
		return round(float64(t1-t0)/clockTicks/secs, 2)
	}
	total := float64(b.total - a.total)
	busy := total - float64(b.idle-a.idle) - float64(b.iowait-a.iowait)
	f := CPUFigures{
		Seconds:       round(secs, 2),
		Cores:         runtime.NumCPU(),
		BusyPct:       round(100*busy/total, 1),
		IOWaitPct:     round(100*float64(b.iowait-a.iowait)/total, 1),
		PaypipeCores:  cores(a.child, b.child),
		PostgresCores: cores(a.postgres, b.postgres),
		BenchCores:    cores(a.self, b.self),
	}
	f.BusyCores = round(busy/clockTicks/secs, 2)
	f.OtherCores = round(max(0, f.BusyCores-f.PaypipeCores-f.PostgresCores-f.BenchCores), 2)
	return f
}

func machineInfo(ctx context.Context, pool *pgxpool.Pool, bin string) Machine {
	m := Machine{
		NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), GOOS: runtime.GOOS + "/" + runtime.GOARCH,
		Date: time.Now().UTC().Format(time.RFC3339), MemoryBytes: memTotal(), CPUModel: cpuModel(),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		m.PaypipeGoVersion = bi.GoVersion
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/nats-io/nats-server/v2":
				m.NATSServer = d.Version
			case "github.com/nats-io/nats.go":
				m.NATSClient = d.Version
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	m.PGSettings = map[string]string{}
	for _, s := range []string{"synchronous_commit", "fsync", "wal_sync_method", "shared_buffers", "commit_delay", "max_connections"} {
		var v string
		if err := pool.QueryRow(ctx, `SELECT current_setting($1)`, s).Scan(&v); err == nil {
			m.PGSettings[s] = v
		}
	}
	_ = pool.QueryRow(ctx, `SELECT version()`).Scan(&m.PostgreSQL)
	return m
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

// loadAvg is the 1-minute load average (0 where /proc is missing).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	l, _ := strconv.ParseFloat(f[0], 64)
	return l
}

// commitProbe measures how many small state+outbox write transactions per
// second PostgreSQL commits here: each transaction inserts one ~200-byte
// state row and one ~300-byte outbox-like row, from clients connections,
// for d. This is the ceiling the pipeline's commits per payment divide.
func commitProbe(ctx context.Context, url string, clients int, d time.Duration) (CommitProbe, error) {
	pctx, cancel := context.WithTimeout(ctx, queryTimeout)
	pool, err := pg.Open(pctx, url, pg.Options{MaxConns: int32(clients), AppName: "e2ebench-probe"})
	cancel()
	if err != nil {
		return CommitProbe{}, err
	}
	defer pool.Close()
	ddl, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if _, err := pool.Exec(ddl, `CREATE TABLE public.e2ebench_state (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE public.e2ebench_outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, msg_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(), payload text NOT NULL, published_at timestamptz);`); err != nil {
		return CommitProbe{}, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queryTimeout)
		defer cancel()
		_, _ = pool.Exec(dctx, `DROP TABLE public.e2ebench_state, public.e2ebench_outbox`)
	}()
	state, payload := strings.Repeat("s", 200), strings.Repeat("p", 300)
	rctx, stop := context.WithTimeout(ctx, d)
	defer stop()
	var n atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	began := time.Now()
	for range clients {
		wg.Go(func() {
			for rctx.Err() == nil {
				err := pgx.BeginFunc(rctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(rctx, `INSERT INTO public.e2ebench_state (v) VALUES ($1)`, state); err != nil {
						return err
					}
					_, err := tx.Exec(rctx, `INSERT INTO public.e2ebench_outbox (payload) VALUES ($1)`, payload)
					return err
				})
				switch {
				case err == nil:
					n.Add(1)
				case rctx.Err() == nil:
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	secs := time.Since(began).Seconds()
	if firstErr != nil {
		return CommitProbe{}, firstErr
	}
	return CommitProbe{Clients: clients, Seconds: round(secs, 2), Commits: n.Load(), PerSecond: round(float64(n.Load())/secs, 0),
		What: "BEGIN; INSERT a 200-byte state row; INSERT a 300-byte outbox row (uuid unique); COMMIT — from pgx, before paypipe starts"}, nil
}

// activitySampler samples pg_stat_activity for paypipe's connections to the
// bench database while a scenario runs: how many connections the process
// holds, what they are doing and what the active ones wait for. It reads
// over the admin connection (another database), so it costs the bench
// database no commits.
type activitySampler struct {
	stop chan struct{}
	done chan struct{}
	acc  PGActivity
	sums map[string]float64
}

func (e *modeEnv) sampleActivity(ctx context.Context, every time.Duration) *activitySampler {
	s := &activitySampler{stop: make(chan struct{}), done: make(chan struct{}), sums: map[string]float64{}}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.sample(ctx, e.admin, e.dbName)
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *activitySampler) sample(ctx context.Context, admin *pgxpool.Pool, db string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// query is the statement running, or for an idle connection the last
	// one it ran: for "idle in transaction", the statement after which the
	// process went off to do something else with the transaction open.
	rows, err := admin.Query(ctx, `SELECT coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, 'CPU'),
regexp_replace(left(query, 300), '\s+', ' ', 'g'), count(*)
FROM pg_stat_activity WHERE datname = $1 AND application_name = 'paypipe' GROUP BY 1, 2, 3`, db)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var state, wait, query string
		var n float64
		if rows.Scan(&state, &wait, &query, &n) != nil {
			return
		}
		query = truncate(query, 110)
		s.sums["conns"] += n
		switch state {
		case "active":
			s.sums["active"] += n
			s.sums["wait "+wait] += n
			if strings.HasPrefix(wait, "Lock:") {
				s.sums["lockq "+wait+" "+query] += n
			}
		case "idle in transaction":
			s.sums["idle_in_tx"] += n
			s.sums["itxq "+query] += n
		case "idle":
			s.sums["idle"] += n
		}
	}
	if rows.Err() == nil {
		s.acc.Samples++
	}
}

// finish stops sampling and returns the averages per sample.
func (s *activitySampler) finish() PGActivity {
	close(s.stop)
	<-s.done
	a := s.acc
	if a.Samples == 0 {
		return a
	}
	n := float64(a.Samples)
	a.Conns, a.Active, a.IdleInTx, a.Idle = round(s.sums["conns"]/n, 2), round(s.sums["active"]/n, 2), round(s.sums["idle_in_tx"]/n, 2), round(s.sums["idle"]/n, 2)
	a.ActiveWaits = map[string]float64{}
	itx, locks := map[string]float64{}, map[string]float64{}
	for k, v := range s.sums {
		if w, ok := strings.CutPrefix(k, "wait "); ok {
			a.ActiveWaits[w] = round(v/n, 2)
		}
		if q, ok := strings.CutPrefix(k, "itxq "); ok {
			itx[q] = v / n
		}
		if q, ok := strings.CutPrefix(k, "lockq "); ok {
			locks[q] = v / n
		}
	}
	a.IdleInTxAfter, a.LockWaitsIn = topN(itx, 8), topN(locks, 5)
	return a
}

// topN keeps the n largest entries of m (at least 0.05), rounded.
func topN(m map[string]float64, n int) map[string]float64 {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v >= 0.05 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b)) })
	out := map[string]float64{}
	for _, k := range keys[:min(n, len(keys))] {
		out[k] = round(m[k], 2)
	}
	return out
}
