-- Failed logins per account, for the brute-force defence in core::auth:
-- a count that starts again after a quiet window, and a time before which
-- the account's password is not checked at all.
CREATE TABLE login_failures (
    account_id    TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    failures      BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);
