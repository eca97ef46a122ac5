-- Canonical records pushed through the records API (or written by flows whose target is an `api`
-- connection), for website developers to pull. `collection` separates independent sets (the `api`
-- connection's `collection` option; default "default").

CREATE TABLE api_records (
    collection TEXT NOT NULL,
    stream     TEXT NOT NULL,
    key        TEXT NOT NULL,
    seq        INTEGER NOT NULL,           -- change number: bumped on every real change, the pull cursor
    hash       TEXT NOT NULL,              -- content hash of the canonical record (unchanged pushes are no-ops)
    payload    TEXT NOT NULL,              -- canonical JSON
    updated_at TEXT NOT NULL,
    PRIMARY KEY (collection, stream, key)
) WITHOUT ROWID;
CREATE UNIQUE INDEX api_records_seq ON api_records (seq);
CREATE INDEX api_records_changes ON api_records (collection, stream, seq);

-- The change-number counter. Taking numbers is the first write of a push, so concurrent pushes are
-- serialised before they read anything, and change numbers are committed in order.
CREATE TABLE api_record_seq (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO api_record_seq (id, value) VALUES (1, 0);
