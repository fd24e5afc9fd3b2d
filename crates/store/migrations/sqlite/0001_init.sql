-- Accounts, sessions, one-time tokens and security events.
-- Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ip           TEXT,
    user_agent   TEXT
);
CREATE INDEX sessions_account ON sessions (account_id);

CREATE TABLE one_time_tokens (
    token_hash TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE security_events (
    id         TEXT PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    reason     TEXT,
    account_id TEXT,
    ip         TEXT,
    user_agent TEXT,
    request_id TEXT
);
CREATE INDEX security_events_at ON security_events (at, id);
CREATE INDEX security_events_kind ON security_events (kind, at);
CREATE INDEX security_events_account ON security_events (account_id, at);
CREATE INDEX security_events_ip ON security_events (ip, at);
