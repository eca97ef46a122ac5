-- API keys of `ferry serve`. Only a SHA-256 of each token is stored: tokens are 32 random bytes, so a
-- fast hash is enough (no dictionary to attack, unlike passwords); the token is shown once at creation.

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,         -- public part, shown in listings and logs
    hash         TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the whole token
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,            -- comma-separated: read, write, admin
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
