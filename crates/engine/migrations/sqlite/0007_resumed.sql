-- Create-once records resumed in the target (found behind their end state after a crash or fault) and
-- records written with a warning (e.g. an accepted tax difference): counted per run, shown by `ferry status`.
ALTER TABLE runs ADD COLUMN resumed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN warned INTEGER NOT NULL DEFAULT 0;
