-- Certificates obtained by ACME (ADR 0016). In the database, not in
-- files, so that every node on one PostgreSQL database serves the
-- certificate one of them ordered. `credentials` (the ACME account's URL
-- and private key) and `key_sealed` (the certificate's private key) are
-- sealed with the system key; the chain is public.
CREATE TABLE acme_accounts (
    directory    TEXT PRIMARY KEY,
    credentials  TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE acme_certificates (
    directory    TEXT NOT NULL,
    names        TEXT NOT NULL,
    chain_pem    TEXT NOT NULL,
    key_sealed   TEXT NOT NULL,
    not_before   BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    renew_at     BIGINT NOT NULL,
    issued_at    BIGINT NOT NULL,
    PRIMARY KEY (directory, names)
);

-- The challenges of an order in progress, so that every node answers the
-- CA's validation (it may reach any of them): `response` is the HTTP-01
-- key authorization, or the TLS-ALPN-01 certificate and its throwaway
-- key (PEM), sealed. Deleted when the order ends; never kept past
-- `expires_at`.
CREATE TABLE acme_challenges (
    token        TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    response     TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- The deployment's orders, one row per CA directory and set of names: the
-- failures in a row and when the next order may start. An order is
-- claimed by moving `next_try_at` forward in one conditional update, so
-- one node orders at a time and a failure backs off every node alike.
CREATE TABLE acme_orders (
    directory    TEXT NOT NULL,
    names        TEXT NOT NULL,
    failures     BIGINT NOT NULL,
    next_try_at  BIGINT NOT NULL,
    PRIMARY KEY (directory, names)
);
