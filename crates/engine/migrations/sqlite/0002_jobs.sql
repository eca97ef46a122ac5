-- The durable job queue of `ferry serve` (see crates/engine/src/store/jobs.rs). Times are RFC 3339 UTC text
-- with microseconds (fixed width, so text order is time order).

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    flow         TEXT NOT NULL,
    kind         TEXT NOT NULL,           -- scheduled | webhook | manual | reconcile | retry
    keys         TEXT,                    -- JSON array of source keys (targeted sync), NULL = whole flow
    options      TEXT NOT NULL DEFAULT '{}',  -- JSON JobOptions (full, replay)
    status       TEXT NOT NULL,           -- queued | running | succeeded | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_after    TEXT NOT NULL,
    lease_holder TEXT,
    lease_until  TEXT,
    dedupe_key   TEXT UNIQUE,             -- e.g. schedule:<flow>:<fire instant>: each firing enqueued once
    run_id       INTEGER,
    error        TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT
);
-- The claim's scan: due queued jobs in order, and running ones whose lease may have expired.
CREATE INDEX jobs_claim ON jobs (status, run_after, id);
CREATE INDEX jobs_by_flow ON jobs (flow, id);
