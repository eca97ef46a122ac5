-- Hash of the raw source record under the flow's mapping: lets an unchanged record be recognised before
-- it is mapped and validated (the fast path of a no-change re-sync).
ALTER TABLE xref ADD COLUMN source_hash TEXT;
CREATE INDEX xref_by_source_hash ON xref (flow, source_hash);
