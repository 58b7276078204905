-- GopherGate schema, SQLite flavour. Times are RFC 3339 UTC text with milliseconds
-- ("2026-11-26T20:42:56.123Z"), which sorts as it reads.

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    username       TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    -- Bumped on logout-everywhere and password change: sessions carry the epoch they were issued in.
    session_epoch  INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    -- SHA-256 of the full key; the key itself is never stored.
    key_hash    BLOB    NOT NULL UNIQUE,
    key_prefix  TEXT    NOT NULL,
    -- JSON array of allowed model ids, NULL for any model.
    models      TEXT,
    rpm         INTEGER,
    budget_usd  REAL,
    spent_usd   REAL    NOT NULL DEFAULT 0,
    expires_at  TEXT,
    revoked_at  TEXT,
    created_at  TEXT    NOT NULL
);
-- A name belongs to one live key at a time; revoked keys keep theirs for the log's sake.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

CREATE TABLE provider_credentials (
    provider    TEXT PRIMARY KEY,
    -- Which derived key encrypted the row, so the master key can be rotated later.
    key_id      TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE request_logs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id         TEXT    NOT NULL,
    created_at         TEXT    NOT NULL,
    key_id             INTEGER,
    key_name           TEXT,
    provider           TEXT,
    model              TEXT,
    upstream_model     TEXT,
    stream             INTEGER NOT NULL,
    status             INTEGER NOT NULL,
    latency_ms         INTEGER NOT NULL,
    ttft_ms            INTEGER,
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    cached_tokens      INTEGER,
    reasoning_tokens   INTEGER,
    cost_usd           REAL,
    usage_source       TEXT,
    price_source       TEXT,
    error              TEXT
);
CREATE INDEX request_logs_created ON request_logs (created_at);
CREATE INDEX request_logs_key ON request_logs (key_name, id);
CREATE INDEX request_logs_model ON request_logs (model, id);

-- Counters other processes can watch cheaply (e.g. a CLI revoking a key while the server runs).
CREATE TABLE meta (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO meta (name, value) VALUES ('keys_version', 0);

CREATE TRIGGER api_keys_changed_update AFTER UPDATE ON api_keys
BEGIN
    UPDATE meta SET value = value + 1 WHERE name = 'keys_version';
END;
CREATE TRIGGER api_keys_changed_delete AFTER DELETE ON api_keys
BEGIN
    UPDATE meta SET value = value + 1 WHERE name = 'keys_version';
END;
