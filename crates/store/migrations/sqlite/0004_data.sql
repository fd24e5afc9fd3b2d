-- Protected data (see core::data and ADR 0007).

-- A collection's schema is JSON (core::data::schema::CollectionSchema).
-- `rev` counts schema changes; `layout_rev` counts the ones that change how
-- values are stored; records behind it are rewritten by the reseal pass.
CREATE TABLE collections (
    name          TEXT PRIMARY KEY,
    schema        TEXT NOT NULL,
    rev           BIGINT NOT NULL,
    layout_rev    BIGINT NOT NULL,
    key_id        TEXT NOT NULL,
    index_key_id  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Data keys, each wrapped (sealed) by a key derived from the master key,
-- bound to its id and scope. Never stored unwrapped.
CREATE TABLE data_keys (
    id          TEXT PRIMARY KEY,
    scope       TEXT NOT NULL,
    wrapped     TEXT NOT NULL,
    master_id   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
-- The id of the master key every data key is wrapped with (derived from
-- the key, revealing nothing of it). A key is inserted only while it
-- matches, and a master rotation changes it in the transaction that
-- re-wraps every key, so no key is ever wrapped with a retired master.
CREATE TABLE master_fingerprint (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    key_id  TEXT NOT NULL
);
CREATE UNIQUE INDEX data_keys_one_system ON data_keys (scope) WHERE scope = 'system';

-- Every record of every collection. `data` holds plain values, `sealed`
-- ciphertexts of sensitive ones (field -> v1.<key id>.<...>), `blind` the
-- keyed blind indexes of searchable sensitive ones. All three are JSON
-- objects. `key_id` is the data key of the ciphertexts.
CREATE TABLE records (
    collection  TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    owner_id    TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    key_id      TEXT,
    layout_rev  BIGINT NOT NULL,
    data        TEXT NOT NULL,
    sealed      TEXT NOT NULL,
    blind       TEXT NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE INDEX records_created ON records (collection, created_at);
CREATE INDEX records_owner ON records (collection, owner_id, created_at);
CREATE INDEX records_key ON records (collection, key_id);

-- Values of unique fields (canonical JSON, or a keyed MAC for sensitive
-- fields): the primary key enforces uniqueness in both databases.
CREATE TABLE record_unique (
    collection  TEXT NOT NULL,
    field       TEXT NOT NULL,
    value       TEXT NOT NULL,
    record_id   TEXT NOT NULL,
    PRIMARY KEY (collection, field, value),
    FOREIGN KEY (collection, record_id) REFERENCES records (collection, id) ON DELETE CASCADE
);
CREATE INDEX record_unique_record ON record_unique (collection, record_id);

-- API keys: only the SHA-256 of the key is stored; `prefix` is its public
-- start, for lists. `scopes` and `allowed_ips` are JSON arrays.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    prefix       TEXT NOT NULL,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    allowed_ips  TEXT NOT NULL,
    expires_at   BIGINT,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    revoked_at   BIGINT
);

-- Custom roles, beside the account's built-in role.
CREATE TABLE account_roles (
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    PRIMARY KEY (account_id, role)
);

-- Data-access events, written in batches. `record_ids` is a JSON array.
CREATE TABLE data_events (
    at          BIGINT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    collection  TEXT NOT NULL,
    action      TEXT NOT NULL,
    record_ids  TEXT NOT NULL,
    count       BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    sensitive   BIGINT NOT NULL,
    ip          TEXT,
    request_id  TEXT
);
CREATE INDEX data_events_at ON data_events (at);
CREATE INDEX data_events_collection ON data_events (collection, at);

-- With a master passphrase (in place of a key file): the random salt and
-- the Argon2id cost it is stretched with. One row.
CREATE TABLE master_kdf (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    salt         TEXT NOT NULL,
    memory_kib   BIGINT NOT NULL,
    iterations   BIGINT NOT NULL,
    parallelism  BIGINT NOT NULL
);
