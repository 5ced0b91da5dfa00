package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgres is the chaos run's private PostgreSQL cluster: its own data
// directory and port, so that stopping it (F13) never touches the
// developer's database. It repeats scripts/pg.sh's choices (binaries from
// /usr/lib/postgresql/<newest>/bin or PATH, the postgres OS user when run as
// root, durability settings left at their defaults, which are on) because
// pg.sh has one fixed data directory.
type postgres struct {
	bin     string
	dataDir string
	sockDir string
	port    int
	logPath string
	asUser  string // run as this OS user (root runs the cluster as postgres)
}

// findPGBin locates initdb and pg_ctl as scripts/pg.sh does.
func findPGBin() (string, error) {
	if d := os.Getenv("PAYPIPE_PG_BIN"); d != "" {
		if isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) < pgMajor(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if isExec(filepath.Join(dirs[i], "initdb")) && isExec(filepath.Join(dirs[i], "pg_ctl")) {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH (set PAYPIPE_PG_BIN)")
}

func pgMajor(dir string) int {
	var n int
	fmt.Sscanf(filepath.Base(filepath.Dir(dir)), "%d", &n)
	return n
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func newPostgres(base string, port int) (*postgres, error) {
	bin, err := findPGBin()
	if err != nil {
		return nil, err
	}
	pg := &postgres{bin: bin, dataDir: filepath.Join(base, "pg"), sockDir: filepath.Join(base, "pgrun"),
		port: port, logPath: filepath.Join(base, "logs", "postgres.log")}
	if os.Geteuid() == 0 {
		pg.asUser = "postgres"
		if _, err := exec.LookPath("runuser"); err != nil {
			return nil, errors.New("running as root needs runuser to start PostgreSQL as the postgres user")
		}
	}
	for _, d := range []string{pg.dataDir, pg.sockDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if pg.asUser != "" {
			if out, err := exec.Command("chown", pg.asUser+":", d).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("chown %s: %v: %s", d, err, out)
			}
		}
	}
	if pg.asUser != "" {
		// The log file is written by pg_ctl as the cluster owner.
		if err := os.WriteFile(pg.logPath, nil, 0o666); err != nil {
			return nil, err
		}
		if err := os.Chmod(pg.logPath, 0o666); err != nil {
			return nil, err
		}
	}
	return pg, nil
}

// run runs a PostgreSQL tool as the cluster owner, from /.
func (pg *postgres) run(ctx context.Context, timeout time.Duration, tool string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := filepath.Join(pg.bin, tool)
	var cmd *exec.Cmd
	if pg.asUser != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", pg.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// init creates the cluster, starts it and creates the paypipe role and
// database.
func (pg *postgres) init(ctx context.Context) error {
	if err := pg.run(ctx, 2*time.Minute, "initdb", "-D", pg.dataDir, "-U", "postgres", "-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=scram-sha-256"); err != nil {
		return err
	}
	conf := fmt.Sprintf(`
# chaos harness
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 200
shared_buffers = 128MB
`, pg.port, pg.sockDir)
	f, err := os.OpenFile(filepath.Join(pg.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(conf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := pg.start(ctx); err != nil {
		return err
	}
	return pg.run(ctx, time.Minute, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.sockDir, "-p", fmt.Sprint(pg.port),
		"-U", "postgres", "-d", "postgres",
		"-c", "CREATE ROLE paypipe LOGIN PASSWORD 'paypipe' CREATEDB",
		"-c", "CREATE DATABASE paypipe OWNER paypipe")
}

func (pg *postgres) start(ctx context.Context) error {
	return pg.run(ctx, 2*time.Minute, "pg_ctl", "start", "-D", pg.dataDir, "-l", pg.logPath, "-w", "-t", "90")
}

// stopImmediate is F13's fault: every backend is killed at once, nothing is
// flushed beyond what the WAL already has, and the next start runs crash
// recovery.
func (pg *postgres) stopImmediate(ctx context.Context) error {
	return pg.run(ctx, time.Minute, "pg_ctl", "stop", "-D", pg.dataDir, "-m", "immediate", "-w", "-t", "30")
}

// shutdown stops the cluster for good at the end of the run.
func (pg *postgres) shutdown(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(pg.dataDir, "postmaster.pid")); err != nil {
		return nil // not running
	}
	return pg.run(ctx, time.Minute, "pg_ctl", "stop", "-D", pg.dataDir, "-m", "immediate", "-w", "-t", "30")
}

func (pg *postgres) url() string {
	return fmt.Sprintf("postgres://paypipe:paypipe@127.0.0.1:%d/paypipe?sslmode=disable", pg.port)
}

// ping reports whether the cluster accepts paypipe's login.
func (pg *postgres) ping(ctx context.Context) error {
	c, err := pgx.Connect(ctx, pg.url())
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.Ping(ctx)
}
