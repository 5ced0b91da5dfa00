// Package pg opens paypipe's PostgreSQL pools with explicit, safe settings
// and checks that the server keeps committed data (fsync and friends on).
package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Options bound a pool. Zero values take the defaults.
type Options struct {
	MaxConns int32 // default 16
	MinConns int32 // default 0
	// StatementTimeout caps any one statement: default 30s.
	StatementTimeout time.Duration
	// IdleInTxTimeout ends sessions that sit in an open transaction: default
	// 60s. It bounds how long a crashed handler can hold row locks.
	IdleInTxTimeout time.Duration
	// ConnectTimeout bounds connection set-up: default 5s.
	ConnectTimeout time.Duration
	// AppName shows in pg_stat_activity.
	AppName string
}

// Open returns a pool for url. It does not wait for the server: use Ping.
func Open(ctx context.Context, url string, o Options) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, errors.New("pg: empty database URL (set DATABASE_URL)")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pg: parse database URL: %w", err)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 16
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 30 * time.Second
	}
	if o.IdleInTxTimeout <= 0 {
		o.IdleInTxTimeout = 60 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.AppName == "" {
		o.AppName = "paypipe"
	}
	cfg.MaxConns = o.MaxConns
	cfg.MinConns = o.MinConns
	cfg.MaxConnLifetime = time.Hour
	cfg.MaxConnLifetimeJitter = 5 * time.Minute
	cfg.MaxConnIdleTime = 10 * time.Minute
	cfg.HealthCheckPeriod = 30 * time.Second
	cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	rp := cfg.ConnConfig.RuntimeParams
	rp["application_name"] = o.AppName
	rp["statement_timeout"] = fmt.Sprint(o.StatementTimeout.Milliseconds())
	rp["idle_in_transaction_session_timeout"] = fmt.Sprint(o.IdleInTxTimeout.Milliseconds())
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pg: pool: %w", err)
	}
	return pool, nil
}

// ErrNotDurable is returned by CheckDurability when the server may lose
// committed transactions.
var ErrNotDurable = errors.New("pg: server is not configured to keep committed data")

// CheckDurability fails if fsync, full_page_writes or synchronous_commit are
// off: a payment system must not acknowledge what a crash can take back.
func CheckDurability(ctx context.Context, pool *pgxpool.Pool) error {
	var fsync, fpw, sc string
	if err := pool.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('full_page_writes'), current_setting('synchronous_commit')`).
		Scan(&fsync, &fpw, &sc); err != nil {
		return fmt.Errorf("pg: read durability settings: %w", err)
	}
	if fsync != "on" || fpw != "on" || (sc != "on" && sc != "remote_apply" && sc != "remote_write") {
		return fmt.Errorf("%w: fsync=%s full_page_writes=%s synchronous_commit=%s", ErrNotDurable, fsync, fpw, sc)
	}
	return nil
}
