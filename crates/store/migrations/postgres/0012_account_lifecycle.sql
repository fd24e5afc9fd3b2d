-- The account lifecycle (ADR 0015). `email_verified_at` is when the owner
-- proved the address (accounts from before this migration count as
-- verified: they were made when nothing was checked, and locking them out
-- on upgrade would help nobody); `disabled_at` is an administrator's stop,
-- read with every session and API-key lookup; `delete_after` is the end
-- of a requested deletion's grace period (signing in cancels it);
-- `last_sign_in_at` is for administrators' searches; `device_epoch` is in
-- every device token the account was given, and raised when its sign-ins
-- are ended (a reset, a disable, an undone address change, a lockdown), so
-- older tokens stop counting apart.
ALTER TABLE accounts ADD COLUMN email_verified_at BIGINT;
ALTER TABLE accounts ADD COLUMN device_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;
ALTER TABLE accounts ADD COLUMN delete_after BIGINT;
ALTER TABLE accounts ADD COLUMN last_sign_in_at BIGINT;
UPDATE accounts SET email_verified_at = created_at;
CREATE INDEX accounts_delete_after ON accounts (delete_after);

-- Links mailed to an address: to verify it (`verify`), to confirm a new
-- one (`change`), to undo a change from the old one (`undo`). The SHA-256
-- of the link's token; for `verify` also the keyed MAC of a short code
-- (its tries are counted per address, in `send_counts`). Single use:
-- spending is a DELETE. An unexpired `undo` link also holds its address:
-- nobody else may take it meanwhile.
CREATE TABLE email_tokens (
    token_hash  TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    code_mac    TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX email_tokens_account ON email_tokens (account_id, purpose);
CREATE INDEX email_tokens_email ON email_tokens (email, purpose);

-- Reset codes now also come from a forgotten password or an
-- administrator: why each was sent.
ALTER TABLE password_resets ADD COLUMN reason TEXT NOT NULL DEFAULT 'incident';
