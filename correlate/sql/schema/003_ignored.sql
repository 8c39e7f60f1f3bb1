-- 003_ignored: records read that are well-formed but carry nothing pamcorr judges
-- (a Teleport cert.create, an sshd "Connection closed"): counted by type, not stored.
ALTER TABLE ingest_log ADD COLUMN ignored BIGINT DEFAULT 0;
CREATE TABLE ignored_counts (
    ingest_id  INTEGER NOT NULL,
    event_type VARCHAR NOT NULL,
    count      BIGINT NOT NULL
);
