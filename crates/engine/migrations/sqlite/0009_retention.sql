-- Retention (`ferry prune`, and `ferry serve`'s automatic prune): what each prune removed, and when, so a
-- server prunes once per interval across restarts and `ferry status` can say when it last happened.

CREATE TABLE prunes (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,            -- RFC 3339 UTC, microseconds (fixed width: text order is time order)
    finished_at TEXT NOT NULL,
    report      TEXT NOT NULL             -- the PruneReport, JSON
);

-- Age scans of the prune: runs by start, finished jobs by end, pushed records by last change.
CREATE INDEX runs_by_started ON runs (started_at);
CREATE INDEX jobs_finished ON jobs (status, finished_at);
CREATE INDEX api_records_by_updated ON api_records (collection, stream, updated_at);
