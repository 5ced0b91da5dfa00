package pspsim

import (
	"context"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// WriteSettlementProbed is WriteSettlementCSV calling onRow after each
// movement row is read from the database.
func WriteSettlementProbed(ctx context.Context, pool *pgxpool.Pool, w io.Writer, date time.Time, onRow func()) error {
	return writeSettlement(ctx, pool, w, date, onRow)
}
