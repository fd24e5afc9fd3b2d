-- Backups (ADR 0013). A sentinel row is committed just before each
-- snapshot and named in its manifest: a restore that lacks it restored an
-- older database than it claims. Only the newest hundred are kept.
CREATE TABLE backup_sentinels (
    value       TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);
