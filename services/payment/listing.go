package payment

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The list endpoints (checkouts, an order's refunds, payouts) page newest
// first by keyset (created_at, id): ?limit=1..maxListLimit and
// ?starting_after=<the last id of the previous page>.

// parseLimit reads ?limit: defaultListLimit when absent; anything outside
// 1..maxListLimit is refused, not clamped.
func parseLimit(q url.Values) (int, *apiError) {
	v, ok := q["limit"]
	if !ok {
		return defaultListLimit, nil
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n < 1 || n > maxListLimit {
		return 0, &apiError{code: CodeInvalidParameter, detail: fmt.Sprintf("limit is an integer from 1 to %d", maxListLimit),
			fields: []FieldError{{Field: "limit", Code: FieldOutOfRange, Detail: fmt.Sprintf("want 1 to %d", maxListLimit)}}}
	}
	return n, nil
}

// cursor resolves ?starting_after: the creation time and id of the object
// it names, looked up with lookup (SELECT created_at … WHERE id = $1 AND
// the listing's scope, with args from $2), so that a cursor from another
// merchant or another list is refused exactly like an unknown id. ok is
// false when the query has no cursor.
func (s *Service) cursor(ctx context.Context, q url.Values, what, lookup string, args ...any) (at time.Time, id uuid.UUID, ok bool, err error) {
	if !q.Has("starting_after") {
		return at, id, false, nil
	}
	notFound := &apiError{code: CodeInvalidParameter, detail: "starting_after is the id of a " + what + " from the previous page",
		fields: []FieldError{{Field: "starting_after", Code: FieldStartingAfterNotFound, Detail: "no such " + what}}}
	id, valid := parseUUID(q.Get("starting_after"))
	if !valid {
		return at, id, false, notFound
	}
	err = s.pool.QueryRow(ctx, lookup, append([]any{id}, args...)...).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return at, id, false, notFound
	}
	if err != nil {
		return at, id, false, dbError(fmt.Errorf("read cursor: %w", err))
	}
	return at, id, true, nil
}

// page cuts a listing read with limit+1 rows to limit and reports whether
// there was more; an empty page is [], never null.
func page[T any](rows []T, limit int) ([]T, bool) {
	if rows == nil {
		rows = []T{}
	}
	if len(rows) > limit {
		return rows[:limit], true
	}
	return rows, false
}
