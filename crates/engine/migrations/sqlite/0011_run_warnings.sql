-- A run's warnings (JSON array of strings: keys read twice, records left in the target, a header that
-- looks split by the wrong delimiter…), shown by `ferry status` after the run's summary is gone.
ALTER TABLE runs ADD COLUMN warnings TEXT;
