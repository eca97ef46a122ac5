-- Alerts (`[alerts]`, evaluated by `ferry serve`): the problems found, what each channel was told about
-- them, and the counts of rejected webhook deliveries the webhook_rejections rule reads. Kept in the store
-- so a restarted server neither sends a message again nor forgets one it owes. Times are RFC 3339 UTC
-- text with microseconds (fixed width: text order is time order).

-- One row per problem: a rule and its subject (a flow, a connection, '' for the whole workspace), from
-- when its condition was first seen until it cleared.
CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    rule        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    message     TEXT NOT NULL,            -- what was wrong when it opened (sent in every message about it)
    opened_at   TEXT NOT NULL,
    resolved_at TEXT                      -- NULL while the condition holds
);
-- At most one open alert per rule and subject, even with two servers evaluating at once.
CREATE UNIQUE INDEX alerts_open ON alerts (rule, subject) WHERE resolved_at IS NULL;
CREATE INDEX alerts_by_resolved ON alerts (resolved_at);

-- What a channel was told: a row once the "fired" message got through, its resolved_at once "resolved" did.
CREATE TABLE alert_deliveries (
    alert_id    INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    fired_at    TEXT,
    resolved_at TEXT,
    PRIMARY KEY (alert_id, channel)
);

-- Rejected webhook deliveries (bad signature, stale timestamp, no secret) per connection, minute and code.
-- Counted in memory by the server and added here at each evaluation: a flood of bad requests costs one
-- write per minute and code, not one per request.
CREATE TABLE webhook_rejections (
    connection TEXT NOT NULL,
    minute     TEXT NOT NULL,             -- the minute's start
    code       TEXT NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (connection, minute, code)
);

-- When alerting began on this store (one row): a flow that never ran has gone without success since then.
CREATE TABLE alert_watch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    since TEXT NOT NULL
);
