-- A stuck payout (its PSP outcome unknown for GiveUpAfter) can be put back
-- in the sender's queue by an operator (`paypipe payout retry`): retried_at
-- starts a new give-up window without touching reserved_at, which stays the
-- fact of when the wallet reserved the money.

-- +goose Up
ALTER TABLE payout.payouts ADD COLUMN retried_at timestamptz;

-- +goose Down
ALTER TABLE payout.payouts DROP COLUMN retried_at;
