-- Ferry's durable state: runs, checkpoints, the ID cross-reference with content hashes, parked failures.
-- Times are RFC 3339 UTC text.

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    flow        TEXT NOT NULL,
    mode        TEXT NOT NULL,            -- incremental | full | retry | targeted
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,            -- running | ok | failed_records | aborted
    read        INTEGER NOT NULL DEFAULT 0,
    created     INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    unchanged   INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    retired     INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX runs_by_flow ON runs (flow, id);

-- Per-record outcomes of a run: only records that were written, retired or failed (unchanged ones cost nothing).
CREATE TABLE run_records (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    outcome   TEXT NOT NULL,              -- created | updated | unchanged | retired | failed
    target_id TEXT,
    field     TEXT,
    message   TEXT
);
CREATE INDEX run_records_by_run ON run_records (run_id);

CREATE TABLE checkpoints (
    flow       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,             -- the source connector's opaque cursor, JSON
    updated_at TEXT NOT NULL
);

-- Source key <-> target id, with the hash and canonical payload last written. (A rowid table: its rows
-- carry the payload, too large for an efficient WITHOUT ROWID B-tree.)
CREATE TABLE xref (
    id        INTEGER PRIMARY KEY,
    flow      TEXT NOT NULL,
    key       TEXT NOT NULL,
    target_id TEXT NOT NULL,
    hash      TEXT NOT NULL,
    payload   TEXT,
    synced_at TEXT NOT NULL,
    UNIQUE (flow, key)
);
CREATE INDEX xref_by_target ON xref (target_id);

-- Records parked after failing: what failed, where, how often, when to try again, and the source payload
-- to replay once the data or mapping is fixed.
CREATE TABLE failures (
    id             INTEGER PRIMARY KEY,
    flow           TEXT NOT NULL,
    key            TEXT NOT NULL,
    position       TEXT,
    stage          TEXT NOT NULL,         -- read | map | validate | write | retire
    field          TEXT,
    message        TEXT NOT NULL,
    retryable      INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    first_failed_at TEXT NOT NULL,
    last_failed_at TEXT NOT NULL,
    next_retry_at  TEXT,
    source         TEXT NOT NULL,         -- the record as the source produced it, JSON
    UNIQUE (flow, key)
);

-- One running instance per flow; a lease so that a killed process does not block forever.
CREATE TABLE flow_locks (
    flow       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
