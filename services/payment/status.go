package payment

// Statuses of checkouts and payment orders. They only move forward: a
// transition is applied only if the new status ranks higher than the current
// one, so late, duplicate or out-of-order reports (webhooks, executor events,
// resolver polls) can never move a payment backwards.
const (
	StatusCreated        = "created"
	StatusRequiresAction = "requires_action"
	StatusProcessing     = "processing"
	StatusSucceeded      = "succeeded"
	StatusFailed         = "failed"
	StatusCompleted      = "completed"
)

var rank = map[string]int{
	StatusCreated:        0,
	StatusRequiresAction: 1,
	StatusProcessing:     2,
	StatusSucceeded:      3,
	StatusFailed:         3,
	StatusCompleted:      4,
}

// CanMove reports whether from → to is a forward transition. succeeded and
// failed are both rank 3 and terminal for each other; completed follows only
// succeeded.
func CanMove(from, to string) bool {
	rf, okf := rank[from]
	rt, okt := rank[to]
	if !okf || !okt || rt <= rf {
		return false
	}
	if to == StatusCompleted && from != StatusSucceeded {
		return false
	}
	if from == StatusFailed {
		return false
	}
	return true
}

// Terminal reports whether nothing can follow status.
func Terminal(status string) bool { return status == StatusFailed || status == StatusCompleted }
