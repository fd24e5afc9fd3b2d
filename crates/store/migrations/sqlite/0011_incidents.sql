-- Incident response (ADR 0014). An incident in force (`lifted_at` NULL)
-- is read by every node on every session and API-key lookup, so a
-- lockdown takes effect everywhere at once. `record` and `lift_record`
-- are signed with the audit key. At most one deployment-wide lockdown is
-- in force at a time.
CREATE TABLE incidents (
    id           TEXT PRIMARY KEY,
    scope        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    started_by   TEXT NOT NULL,
    break_glass  TEXT,
    record       TEXT NOT NULL,
    lifted_at    BIGINT,
    lifted_by    TEXT,
    lift_record  TEXT
);
CREATE INDEX incidents_in_force ON incidents (lifted_at);
CREATE UNIQUE INDEX incidents_one_lockdown ON incidents (scope)
    WHERE lifted_at IS NULL AND scope = 'deployment';

-- The accounts of an account-scoped lockdown. No foreign key: the record
-- of an incident outlives the account.
CREATE TABLE incident_accounts (
    incident_id  TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    account_id   TEXT NOT NULL,
    PRIMARY KEY (incident_id, account_id)
);
CREATE INDEX incident_accounts_account ON incident_accounts (account_id);

-- Password resets an incident forced: the SHA-256 of the code mailed to
-- the owner, single use.
CREATE TABLE password_resets (
    token_hash  TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX password_resets_account ON password_resets (account_id);

-- Drills (`rampart drill`): the SHA-256 of the token that marks a drill's
-- requests, so its events are told apart from real ones, and its report.
CREATE TABLE drills (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    started_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    report      TEXT
);
