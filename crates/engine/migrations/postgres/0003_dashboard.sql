-- PostgreSQL twin of sqlite/0013_dashboard.sql (run_records already has `seq` for the commit order).
-- The operator's dashboard (crates/server/src/dashboard, queries in engine/src/store/dashboard.rs).

-- Field-level changes of a listed written record (JSON array of {path, old, new}): the run page shows
-- what each write changed. NULL for outcomes without one (failed, unchanged, retired, older runs).
ALTER TABLE run_records ADD COLUMN changes TEXT;
-- "Where did WEB-1001 go?": the runs that touched a key, newest first, without scanning every run's records.
CREATE INDEX run_records_by_key ON run_records (key, run_id);

-- Every webhook delivery to a known connection, accepted or not, and why (the dashboard's webhook log).
-- Bounded: each insert forgets rows beyond the newest 10,000 (unauthenticated senders cannot grow it).
CREATE TABLE webhook_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection  TEXT NOT NULL,
    received_at TEXT NOT NULL,
    status      BIGINT NOT NULL,          -- the HTTP status answered
    outcome     TEXT NOT NULL,             -- enqueued | ignored | duplicate | rejected | failed
    code        TEXT,                      -- the error code when refused (invalid_signature, stale_timestamp…)
    message     TEXT,                      -- why: the error message, or the note of an accepted delivery
    delivery_id TEXT,                      -- X-Ferry-Delivery, when sent
    jobs        TEXT NOT NULL DEFAULT '[]',-- JSON array of the job ids enqueued
    bytes       BIGINT NOT NULL
);
CREATE INDEX webhook_log_by_connection ON webhook_log (connection, id);

-- Failures a person dropped from the failures console, with the reason they gave (an audit trail: the
-- parked record leaves `failures`, its payload and the reason stay here).
CREATE TABLE dropped_failures (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    failure_id  BIGINT NOT NULL,
    flow        TEXT NOT NULL,
    key         TEXT NOT NULL,
    stage       TEXT NOT NULL,
    field       TEXT,
    message     TEXT NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    dropped_by  TEXT NOT NULL,             -- the API key id, or "admin" (the admin password)
    dropped_at  TEXT NOT NULL
);
CREATE INDEX dropped_failures_by_flow ON dropped_failures (flow, id);

-- The failures console pages a group (flow, stage, field) by id.
CREATE INDEX failures_by_group ON failures (flow, stage, field, id);
