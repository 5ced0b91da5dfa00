// Package migrate applies paypipe's database migrations with goose. Each
// service owns one PostgreSQL schema and keeps its own goose version table
// in it (<schema>.goose_db_version), so services can be deployed, migrated
// and later moved to their own databases independently. Version 1 of every
// schema is the outbox and inbox tables (outbox.Store.DDL); the service's
// own SQL files, embedded in the binary, start at version 2.
package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/paypipe/paypipe/outbox"
)

// Schema is one service's migrations.
type Schema struct {
	Store outbox.Store
	// SQL holds goose SQL files (00002_name.sql …) at its root; nil when the
	// service has only the outbox tables.
	SQL fs.FS
}

// Embedded is the Schema of store whose goose files are embedded in files
// under migrations/ (//go:embed migrations/*.sql), as every service keeps
// them.
func Embedded(store outbox.Store, files fs.FS) Schema {
	sub, err := fs.Sub(files, "migrations")
	if err != nil {
		panic(err) // a valid path: fs.Sub fails only on an invalid one
	}
	return Schema{Store: store, SQL: sub}
}

// Name is the PostgreSQL schema.
func (s Schema) Name() string { return s.Store.Schema() }

func (s Schema) provider(db *sql.DB) (*goose.Provider, error) {
	h := fnv.New64a()
	_, _ = h.Write([]byte("paypipe-migrate:" + s.Name()))
	// One advisory lock per schema: replicas starting together migrate once;
	// the others wait (bounded: 1s × 300) and then find nothing to do.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64()>>1)), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("migrate: locker: %w", err)
	}
	store := s.Store
	outboxMig := goose.NewGoMigration(1,
		&goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, store.DDL())
			return err
		}},
		&goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, store.DropDDL())
			return err
		}})
	p, err := goose.NewProvider(goose.DialectPostgres, db, s.SQL,
		goose.WithTableName(s.Name()+".goose_db_version"),
		goose.WithGoMigrations(outboxMig),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSessionLocker(locker),
	)
	if err != nil {
		return nil, fmt.Errorf("migrate: %s: %w", s.Name(), err)
	}
	return p, nil
}

func withDB(pool *pgxpool.Pool, fn func(db *sql.DB) error) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	return fn(db)
}

// Up applies every pending migration of every schema, in order.
func Up(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, schemas ...Schema) error {
	return withDB(pool, func(db *sql.DB) error {
		for _, s := range schemas {
			if _, err := db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+s.Name()); err != nil {
				return fmt.Errorf("migrate: create schema %s: %w", s.Name(), err)
			}
			p, err := s.provider(db)
			if err != nil {
				return err
			}
			res, err := p.Up(ctx)
			if err != nil {
				return fmt.Errorf("migrate: up %s: %w", s.Name(), err)
			}
			for _, r := range res {
				if log != nil {
					log.Info("migration applied", "schema", s.Name(), "version", r.Source.Version, "path", r.Source.Path, "duration", r.Duration)
				}
			}
		}
		return nil
	})
}

// Status is one migration's state.
type Status struct {
	Schema  string `json:"schema"`
	Version int64  `json:"version"`
	Source  string `json:"source"`
	Applied bool   `json:"applied"`
	At      string `json:"applied_at,omitempty"`
}

// StatusOf lists every migration of every schema and whether it is applied.
func StatusOf(ctx context.Context, pool *pgxpool.Pool, schemas ...Schema) ([]Status, error) {
	var out []Status
	err := withDB(pool, func(db *sql.DB) error {
		for _, s := range schemas {
			var exists bool
			if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, s.Name()).Scan(&exists); err != nil {
				return fmt.Errorf("migrate: status %s: %w", s.Name(), err)
			}
			p, err := s.provider(db)
			if err != nil {
				return err
			}
			if !exists {
				for _, src := range p.ListSources() {
					out = append(out, Status{Schema: s.Name(), Version: src.Version, Source: sourceName(src)})
				}
				continue
			}
			st, err := p.Status(ctx)
			if err != nil {
				return fmt.Errorf("migrate: status %s: %w", s.Name(), err)
			}
			for _, m := range st {
				row := Status{Schema: s.Name(), Version: m.Source.Version, Source: sourceName(m.Source), Applied: m.State == goose.StateApplied}
				if row.Applied {
					row.At = m.AppliedAt.UTC().Format("2006-01-02T15:04:05Z")
				}
				out = append(out, row)
			}
		}
		return nil
	})
	return out, err
}

func sourceName(s *goose.Source) string {
	if s.Path == "" {
		return "outbox+inbox tables (go)"
	}
	return s.Path
}
