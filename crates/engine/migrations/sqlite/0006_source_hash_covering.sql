-- Source hashes are read in one pass per complete read (the no-change fast path), never looked up one by
-- one: an index in key order that carries them is read without touching the table rows (which hold the
-- payloads), and, unlike an index ordered by hash, is not rewritten page by page at random on every
-- batch commit (a hash-ordered index dirtied most of its pages per batch: hundreds of MB of WAL writes
-- for 100,000 records).
DROP INDEX xref_by_source_hash;
CREATE INDEX xref_source_hashes ON xref (flow, key, source_hash);
