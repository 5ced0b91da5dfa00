package payment

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
)

// KeyLockID exposes the advisory lock of an idempotency key, so that a test
// can hold it and play a request in flight.
var KeyLockID = keyLockID

// ProblemCodes lists every code of the problems table.
func ProblemCodes() []Code {
	out := make([]Code, 0, len(problems))
	for c := range problems {
		out = append(out, c)
	}
	return out
}

// Deliver hands payload to the service's consumer as the Runner would:
// through the inbox under msgID, so a second delivery of one msgID is
// skipped. It reports whether the handler ran.
func (s *Service) Deliver(ctx context.Context, consumer, subject string, msgID uuid.UUID, payload any) (bool, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return false, err
	}
	for _, spec := range s.Consumers() {
		if spec.Name != consumer {
			continue
		}
		d := outbox.Delivery{MsgID: msgID, Subject: subject, Type: contracts.TypeOf(subject), Source: "test",
			Time: time.Now(), Payload: b, NumDelivered: 1}
		return s.store.Handle(ctx, s.pool, consumer, msgID, subject, func(ctx context.Context, tx pgx.Tx) error {
			return spec.Handler(ctx, tx, d)
		})
	}
	return false, fmt.Errorf("no consumer %q", consumer)
}
