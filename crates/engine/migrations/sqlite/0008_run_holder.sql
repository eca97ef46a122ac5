-- Which process (host:pid) ran each run, taken from the flow's lease when the run began: a run still
-- `running` whose holder no longer holds the lease, whose lease expired, or whose process is gone was
-- interrupted (kill -9, power loss) and is marked `interrupted` (engine/src/lease.rs).
ALTER TABLE runs ADD COLUMN holder TEXT;
