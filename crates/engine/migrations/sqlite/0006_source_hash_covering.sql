-- The no-change fast path looks records up by source hash and needs only their key: an index that
-- carries the key answers it without touching the table rows (which hold the payloads and are spread
-- over the whole file), so a re-sync reads a small, dense B-tree instead of one table page per record.
DROP INDEX xref_by_source_hash;
CREATE INDEX xref_by_source_hash ON xref (flow, source_hash, key);
