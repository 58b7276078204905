-- User ids are never reused. A session token names its user by id; without AUTOINCREMENT SQLite
-- may give a new user the id of the most recently deleted one, and that user's unexpired token
-- (same id, same starting epoch) would sign in as the newcomer.
CREATE TABLE users_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    username       TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    -- Bumped on logout-everywhere and password change: sessions carry the epoch they were issued in.
    session_epoch  INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
INSERT INTO users_new (id, username, password_hash, role, session_epoch, created_at, updated_at)
    SELECT id, username, password_hash, role, session_epoch, created_at, updated_at FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
