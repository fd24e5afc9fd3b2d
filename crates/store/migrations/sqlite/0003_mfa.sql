-- Second factors (see core::mfa and ADR 0006).
-- A factor is pending until its enrolment is confirmed (`confirmed_at`).
-- `sealed` is XChaCha20-Poly1305 under a key derived from the master key,
-- with the key id in the value and the factor id as associated data: the
-- TOTP secret, the phone number, or the passkey. Never plaintext.
CREATE TABLE mfa_factors (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('totp', 'webauthn', 'email', 'sms')),
    name          TEXT NOT NULL,
    sealed        TEXT,
    created_at    BIGINT NOT NULL,
    confirmed_at  BIGINT,
    last_used_at  BIGINT,
    -- TOTP: the last time step accepted; a code for it or an earlier step
    -- is refused (no replay).
    last_step     BIGINT NOT NULL DEFAULT -1,
    -- Email/SMS: sends in the current hour-long window, and the last one.
    send_window   BIGINT NOT NULL DEFAULT 0,
    sends         BIGINT NOT NULL DEFAULT 0,
    last_sent_at  BIGINT NOT NULL DEFAULT 0,
    -- Passkeys: SHA-256 of the credential id; one credential, one factor,
    -- across all accounts.
    credential_hash TEXT UNIQUE
);
CREATE INDEX mfa_factors_account ON mfa_factors (account_id);

-- Outstanding challenges: a WebAuthn ceremony's server state, or the MAC
-- of an emailed or texted code. One per (purpose, bound): `bound` is the
-- hash of the pending login's token, or the session id for step-up and
-- enrolment. Taken (deleted) when used.
CREATE TABLE mfa_challenges (
    purpose    TEXT NOT NULL,
    bound      TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    factor_id  TEXT,
    state      TEXT NOT NULL,
    tries      BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (purpose, bound)
);
CREATE INDEX mfa_challenges_account ON mfa_challenges (account_id);

-- Logins whose password was right and whose second factor is awaited.
-- Only the SHA-256 of the mfa_token is kept; `password_fp` is a SHA-256 of
-- the password hash that was verified, so a password change voids them.
CREATE TABLE mfa_pending_logins (
    token_hash  TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    password_fp TEXT NOT NULL,
    failures    BIGINT NOT NULL DEFAULT 0,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX mfa_pending_logins_account ON mfa_pending_logins (account_id);

-- Fixed-window send counters (SMS per number, SMS for the server), keyed
-- by a hash: at most `max` per window, starting again when it ends.
CREATE TABLE send_counts (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    sends        BIGINT NOT NULL
);

-- Recovery codes, as keyed MACs; each used once.
CREATE TABLE recovery_codes (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    code_mac   TEXT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (account_id, code_mac)
);

-- The last time this session's owner proved themselves again (step-up):
-- sensitive actions need it to be recent.
ALTER TABLE sessions ADD COLUMN step_up_at BIGINT NOT NULL DEFAULT 0;

-- Proof of which master key this database's sealed values belong to: a
-- value sealed with it. A node started with another key cannot open it and
-- refuses to start, instead of failing on the first sealed value it reads.
-- One row: the first node to start writes it, every node must open it.
CREATE TABLE key_checks (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    key_id     TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
