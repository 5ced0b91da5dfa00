-- The demo service's own tables. Version 1 of the schema (the outbox and inbox
-- tables) is a Go migration in internal/migrate.
--
-- Money is bigint minor units with an ISO 4217 code, never numeric or float;
-- the CHECKs repeat the Go validation so a bug in a caller cannot store a
-- negative order or a lower-case currency.

-- +goose Up
CREATE TABLE demo.orders (
    id           uuid        PRIMARY KEY,
    customer     text        NOT NULL CHECK (length(customer) BETWEEN 1 AND 200),
    amount_minor bigint      NOT NULL CHECK (amount_minor > 0),
    currency     char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Projection maintained by the demo-projector consumer, one row per currency.
-- Summing into one row per currency serialises concurrent handlers of the
-- same currency on its row lock: fine for a demo, and it makes a double
-- application visible as a wrong total.
CREATE TABLE demo.order_totals (
    currency     char(3) PRIMARY KEY CHECK (currency ~ '^[A-Z]{3}$'),
    orders       bigint  NOT NULL CHECK (orders >= 0),
    amount_minor bigint  NOT NULL CHECK (amount_minor >= 0)
);

-- +goose Down
DROP TABLE demo.order_totals;
DROP TABLE demo.orders;
