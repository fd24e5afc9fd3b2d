-- Scan reports (`rampart scan`, and the scans `serve` runs on a schedule):
-- the whole report as JSON. A report holds no secret (no password, key,
-- token or file content; scanned URLs with credentials are refused and
-- queries are left out); it does name administrators' emails, API key
-- names and prefixes, settings, paths and packages, so only
-- administrators read it. The newest 30 per target are kept, none older
-- than 90 days.
CREATE TABLE scan_reports (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    worst       TEXT,
    findings    BIGINT NOT NULL,
    report      TEXT NOT NULL
);
CREATE INDEX scan_reports_target ON scan_reports (kind, target, started_at);

-- The last use of an API key, for `scan self` (keys unused for 90 days).
CREATE INDEX data_events_actor ON data_events (actor_kind, actor_id, at);
