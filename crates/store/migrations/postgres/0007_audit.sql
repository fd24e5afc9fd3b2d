-- The audit trail (ADR 0011). One chain per node: `seq` counts from 0
-- without gaps; `link` is the hex HMAC of the previous link and the
-- event's canonical bytes; `tree` the hex of the Merkle tree hashes the
-- event added (the link and tree cover every column but themselves and
-- ip_key). Written only by the audit writer, and never updated or
-- deleted except by retention, which replaces a whole range with a signed
-- record of it. Replaces `security_events` and `data_events`, whose rows
-- the first start of this release chains and removes.
CREATE TABLE audit_events (
    node        TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    action      TEXT NOT NULL,
    category    TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    severity    BIGINT NOT NULL,
    reason      TEXT,
    user_id     TEXT,
    source_ip   TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    rule        TEXT,
    object      TEXT,
    fields      TEXT NOT NULL,
    link        TEXT NOT NULL,
    tree        TEXT NOT NULL,
    -- The source address as 32 hex digits (IPv4 mapped into IPv6), for
    -- searches by network. Derived from source_ip; not linked.
    ip_key      TEXT,
    PRIMARY KEY (node, seq)
);
CREATE INDEX audit_events_at ON audit_events (at, seq);
CREATE INDEX audit_events_action ON audit_events (action, at);
CREATE INDEX audit_events_category ON audit_events (category, at);
CREATE INDEX audit_events_user ON audit_events (user_id, at);
CREATE INDEX audit_events_ip ON audit_events (ip_key, at);
CREATE INDEX audit_events_object ON audit_events (object, at);

-- Signed checkpoints (C2SP tlog-checkpoint notes) of each node's tree.
CREATE TABLE audit_checkpoints (
    node TEXT NOT NULL,
    size BIGINT NOT NULL,
    at   BIGINT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (node, size, at)
);

-- Events committed in the transaction of the write they are about, for
-- the writer of `node` to chain (and delete, in the chaining
-- transaction): no acknowledged write lacks its event, even after a crash.
CREATE TABLE audit_pending (
    id   BIGSERIAL PRIMARY KEY,
    node TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX audit_pending_node ON audit_pending (node, id);

-- How far each live stream (`[[audit.streams]]`) has shipped each chain.
CREATE TABLE audit_cursors (
    name     TEXT NOT NULL,
    node     TEXT NOT NULL,
    next_seq BIGINT NOT NULL,
    PRIMARY KEY (name, node)
);

-- Retention's signed records (ADR 0011): each stands for the range of
-- events it removed, so the chain still verifies from it.
CREATE TABLE audit_retired (
    node     TEXT NOT NULL,
    last_seq BIGINT NOT NULL,
    note     TEXT NOT NULL,
    PRIMARY KEY (node, last_seq)
);
