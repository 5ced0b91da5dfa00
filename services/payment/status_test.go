package payment

import "testing"

func TestCanMove(t *testing.T) {
	allowed := map[[2]string]bool{
		{StatusCreated, StatusRequiresAction}: true, {StatusCreated, StatusProcessing}: true,
		{StatusCreated, StatusSucceeded}: true, {StatusCreated, StatusFailed}: true,
		{StatusRequiresAction, StatusProcessing}: true, {StatusRequiresAction, StatusSucceeded}: true,
		{StatusRequiresAction, StatusFailed}: true, {StatusProcessing, StatusSucceeded}: true,
		{StatusProcessing, StatusFailed}: true, {StatusSucceeded, StatusCompleted}: true,
	}
	all := []string{StatusCreated, StatusRequiresAction, StatusProcessing, StatusSucceeded, StatusFailed, StatusCompleted, "bogus"}
	for _, from := range all {
		for _, to := range all {
			if got := CanMove(from, to); got != allowed[[2]string{from, to}] {
				t.Errorf("CanMove(%s, %s) = %v", from, to, got)
			}
		}
	}
}
