-- Failed logins per login name, for the brute-force defence in core::auth.
-- `key` is a SHA-256 of the normalised email, so unknown addresses are
-- counted exactly like real ones (and no address is stored). An attempt is
-- counted before its password is checked; `blocked_until` is the time
-- before which no password is checked at all.
CREATE TABLE login_failures (
    key           TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);
CREATE INDEX login_failures_last_at ON login_failures (last_at);
