-- Pay-out and reconciliation (issue 5).
--
-- reference, psp_reference and psp_amount_minor say how the PSP knows an
-- entry's money movement: paypipe's reference (checkout, refund or payout
-- id), the PSP's own id (pay_…, re_…, po_…) and the gross it moved under
-- that id. The reconciler matches settlement-file lines by them, hence the
-- index on psp_reference. They describe an entry; like every other column
-- they are immutable once posted.
--
-- A settlement entry is the platform's own movement (PSP receivable to
-- bank): it has no merchant, so merchant_id becomes optional for that kind
-- only.

-- +goose Up
ALTER TABLE ledger.journal_entries
    ADD COLUMN reference        text   CHECK (length(reference) BETWEEN 1 AND 255),
    ADD COLUMN psp_reference    text   CHECK (length(psp_reference) BETWEEN 1 AND 255),
    ADD COLUMN psp_amount_minor bigint CHECK (psp_amount_minor > 0),
    ALTER COLUMN merchant_id DROP NOT NULL,
    ADD CONSTRAINT journal_entries_merchant_required CHECK (merchant_id IS NOT NULL OR kind = 'settlement');
CREATE INDEX journal_entries_psp_reference_idx ON ledger.journal_entries (psp_reference) WHERE psp_reference IS NOT NULL;

-- +goose Down
DROP INDEX ledger.journal_entries_psp_reference_idx;
ALTER TABLE ledger.journal_entries
    DROP CONSTRAINT journal_entries_merchant_required,
    ALTER COLUMN merchant_id SET NOT NULL,
    DROP COLUMN psp_amount_minor,
    DROP COLUMN psp_reference,
    DROP COLUMN reference;
