-- The account lifecycle (ADR 0015). `email_verified_at` is when the owner
-- proved the address (accounts from before this migration count as
-- verified: they were made when nothing was checked, and locking them out
-- on upgrade would help nobody); `disabled_at` is an administrator's stop,
-- read with every session and API-key lookup; `delete_after` is the end
-- of a requested deletion's grace period (signing in cancels it);
-- `last_sign_in_at` is for administrators' searches.
ALTER TABLE accounts ADD COLUMN email_verified_at BIGINT;
ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;
ALTER TABLE accounts ADD COLUMN delete_after BIGINT;
ALTER TABLE accounts ADD COLUMN last_sign_in_at BIGINT;
UPDATE accounts SET email_verified_at = created_at;
CREATE INDEX accounts_delete_after ON accounts (delete_after);

-- Links mailed to an address: to verify it (`verify`), to confirm a new
-- one (`change`), to undo a change from the old one (`undo`). The SHA-256
-- of the link's token; for `verify` also the keyed MAC of a short code,
-- with the tries spent on it. Single use: spending is a DELETE.
CREATE TABLE email_tokens (
    token_hash  TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    code_mac    TEXT,
    tries       BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX email_tokens_account ON email_tokens (account_id, purpose);

-- Reset codes now also come from a forgotten password or an
-- administrator: why each was sent.
ALTER TABLE password_resets ADD COLUMN reason TEXT NOT NULL DEFAULT 'incident';
