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

-- Token buckets shared by every node (guard.shared_auth_limits): GCRA, one
-- row per key holding the bucket's theoretical arrival time (Unix ms).
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
CREATE INDEX rate_buckets_tat ON rate_buckets (tat);

-- Unlock codes emailed to an account's owner when the brute-force defence
-- locks it: with one, the owner may sign in despite the lock (at most
-- five tries per code, for an hour). Only the SHA-256 is stored.
CREATE TABLE unlock_tokens (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    uses       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX unlock_tokens_account ON unlock_tokens (account_id);
