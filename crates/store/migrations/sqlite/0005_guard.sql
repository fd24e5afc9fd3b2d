-- Address blocks set by an administrator, the CLI or an automatic
-- response (core::Store::insert_block). Rows stay after they expire or are
-- lifted: they are the offender's record, which doubles the next block.
-- Every node re-reads the blocks in force every second.
CREATE TABLE ip_blocks (
    id         TEXT PRIMARY KEY,
    network    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    source     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    offence    INTEGER NOT NULL,
    lifted_at  BIGINT
);
CREATE INDEX ip_blocks_expires_at ON ip_blocks (expires_at);
CREATE INDEX ip_blocks_network ON ip_blocks (network, created_at);
