package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Hop is the time one step of the pipeline took, over the rows a scenario
// produced, from the timestamps the services record anyway:
//
//   - "relay <schema> <subject>": outbox created_at → published_at (the
//     relay's claim, publish and PubAck, and the mark's commit);
//   - "consume <consumer> <subject>": the outbox row's published_at → the
//     consumer's inbox processed_at (delivery from JetStream, waiting for a
//     worker, the start of the handler's transaction);
//   - "executor register": executor.attempts created_at → registered_at (the
//     registrar's claim, the PSP call, the write-back);
//   - "psp webhook <type>": the simulator's webhook event created_at →
//     finished_at (its sender's poll, the HTTP call into payment, payment's
//     handling of it).
//
// Under saturation every step runs at the same rate; the queue, and so the
// long hop, is in front of the step that limits the rate. Reading other
// services' tables is fine for a bench's diagnostics; a query that fails
// (a schema changed) is reported, not fatal.
type Hop struct {
	Name string  `json:"name"`
	N    int64   `json:"n"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// hops measures the pipeline's steps over rows created since since.
func (d *benchDB) hops(ctx context.Context, schemas []string, since time.Time) ([]Hop, []string) {
	var out []Hop
	var errs []string
	scan := func(r pgx.Rows) error {
		var h Hop
		if err := r.Scan(&h.Name, &h.N, &h.P50, &h.P99, &h.Max); err != nil {
			return err
		}
		h.P50, h.P99, h.Max = round(h.P50, 1), round(h.P99, 1), round(h.Max, 1)
		out = append(out, h)
		return nil
	}
	stats := `count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY d), percentile_disc(0.99) WITHIN GROUP (ORDER BY d), max(d)`
	ms := func(a, b string) string { return fmt.Sprintf(`extract(epoch FROM %s - %s) * 1000`, b, a) }

	var outboxes, inboxes []string
	for _, s := range schemas {
		id := pgx.Identifier{s}.Sanitize()
		outboxes = append(outboxes, fmt.Sprintf(`SELECT %s AS s, subject, msg_id, created_at, published_at FROM %s.outbox WHERE created_at >= $1`, quoteLiteral(s), id))
		inboxes = append(inboxes, fmt.Sprintf(`SELECT consumer, subject, msg_id, processed_at FROM %s.inbox WHERE processed_at >= $1`, id))
	}
	queries := []struct{ what, sql string }{
		{"relay hops", fmt.Sprintf(`SELECT 'relay ' || s || ' ' || subject, %s FROM (SELECT s, subject, %s AS d FROM (%s) o WHERE published_at IS NOT NULL) x GROUP BY s, subject`,
			stats, ms("created_at", "published_at"), strings.Join(outboxes, " UNION ALL "))},
		{"consumer hops", fmt.Sprintf(`SELECT 'consume ' || consumer || ' ' || subject, %s FROM (
SELECT i.consumer, i.subject, %s AS d FROM (%s) i JOIN (%s) o USING (msg_id) WHERE o.published_at IS NOT NULL) x GROUP BY consumer, subject`,
			stats, ms("o.published_at", "i.processed_at"), strings.Join(inboxes, " UNION ALL "), strings.Join(outboxes, " UNION ALL "))},
		{"executor hop", fmt.Sprintf(`SELECT 'executor register', %s FROM (SELECT %s AS d FROM executor.attempts WHERE created_at >= $1 AND registered_at IS NOT NULL) x HAVING count(*) > 0`,
			stats, ms("created_at", "registered_at"))},
		{"webhook hops", fmt.Sprintf(`SELECT 'psp webhook ' || type, %s FROM (SELECT type, %s AS d FROM pspsim.webhook_events WHERE created_at >= $1 AND finished_at IS NOT NULL) x GROUP BY type`,
			stats, ms("created_at", "finished_at"))},
	}
	for _, q := range queries {
		if err := d.query(ctx, scan, q.sql, since); err != nil {
			errs = append(errs, q.what+": "+err.Error())
		}
	}
	slices.SortFunc(out, func(a, b Hop) int { return strings.Compare(a.Name, b.Name) })
	return out, errs
}
