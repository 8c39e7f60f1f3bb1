-- 014_ingest_offsets: where each ingest began reading its file. A file that grew since it was
-- last ingested (the content logged then is a prefix of it, by sha256, ending at a line end) is
-- read from where that ingest stopped: byte offset_bytes, which is line first_line.
ALTER TABLE ingest_log ADD COLUMN offset_bytes BIGINT DEFAULT 0;
ALTER TABLE ingest_log ADD COLUMN first_line BIGINT DEFAULT 1;
