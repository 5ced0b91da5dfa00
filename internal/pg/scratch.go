package pg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ScratchDatabase creates an empty database, named prefix + 12 random hex
// digits, on the server base names, and returns its connection string and a
// function that drops it (WITH (FORCE), bounded to 30 s; errors go to
// logf). Tests and benchmarks use it for a database of their own.
func ScratchDatabase(ctx context.Context, base, prefix string, logf func(format string, a ...any)) (connString, name string, drop func(), err error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(cctx, base)
	if err != nil {
		return "", "", nil, fmt.Errorf("pg: connect to %s: %w", Redact(base), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var b [6]byte
	_, _ = rand.Read(b[:])
	name = prefix + hex.EncodeToString(b[:])
	if _, err := admin.Exec(cctx, "CREATE DATABASE "+name); err != nil {
		return "", "", nil, fmt.Errorf("pg: create database %s: %w", name, err)
	}
	drop = func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(dctx, base)
		if err != nil {
			logf("pg: drop database %s: %v", name, err)
			return
		}
		defer c.Close(dctx)
		if _, err := c.Exec(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			logf("pg: drop database %s: %v", name, err)
		}
	}
	connString, err = WithDatabase(base, name)
	if err != nil {
		drop()
		return "", "", nil, err
	}
	return connString, name, drop, nil
}

// WithDatabase returns the connection string base pointed at database name,
// for both the URL and the keyword/value forms.
func WithDatabase(base, name string) (string, error) {
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			return "", fmt.Errorf("pg: parse connection URL: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// keyword/value form: a later dbname wins.
	return base + " dbname=" + name, nil
}

// Redact returns a connection string's user, host, port and database,
// without the password, for messages.
func Redact(connString string) string {
	if cfg, err := pgx.ParseConfig(connString); err == nil {
		return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	}
	return "(unparseable connection string)"
}
