package payment

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
