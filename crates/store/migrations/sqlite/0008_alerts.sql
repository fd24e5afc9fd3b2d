-- Alerts raised by detection rules (ADR 0012). One row per ongoing attack:
-- repeats of the same rule and group (an address, an account) while the
-- alert is not resolved add to its count and evidence. Evidence is the
-- events' node:seq in the audit trail; responses record what was done,
-- withheld or awaits another administrator's confirmation. No secret is
-- stored here: rule ids, addresses, account ids, event ids.
CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    rule_id     TEXT NOT NULL,
    title       TEXT NOT NULL,
    level       TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    status      TEXT NOT NULL,
    count       BIGINT NOT NULL,
    first_at    BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    evidence    TEXT NOT NULL,
    source_ip   TEXT,
    account     TEXT,
    responses   TEXT NOT NULL,
    node        TEXT NOT NULL,
    changed_by  TEXT,
    changed_at  BIGINT
);
-- At most one unresolved alert per group: a second node raising the same
-- one at the same moment adds to it instead.
CREATE UNIQUE INDEX alerts_open_group ON alerts (group_key) WHERE status <> 'resolved';
CREATE INDEX alerts_last ON alerts (last_at, id);
CREATE INDEX alerts_status ON alerts (status, last_at);

-- What is still to be delivered (webhook, email), persisted so none is
-- lost over a restart; retried with backoff. The body is the alert as the
-- receiver gets it.
CREATE TABLE alert_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id      TEXT NOT NULL,
    channel       TEXT NOT NULL,
    body          TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    next_at       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    delivered_at  BIGINT,
    last_error    TEXT
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (delivered_at, next_at);
