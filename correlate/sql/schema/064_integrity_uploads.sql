-- 064_integrity_uploads (issue 20): the sha256 of each hashed CloudTrail log file as stored (so an
-- unchanged file is not inflated and hashed again by the next run), and Teleport's session.upload
-- events and recording-off session ends (for recording_not_uploaded).
ALTER TABLE ct_log_file ADD COLUMN file_sha256 VARCHAR;
CREATE TABLE IF NOT EXISTS teleport_session_mark (
    sid VARCHAR NOT NULL,                -- the session id
    mark VARCHAR NOT NULL,               -- upload | recording_off
    cluster VARCHAR NOT NULL,            -- cluster_name, '' when the event has none
    ts TIMESTAMPTZ,
    file VARCHAR, line BIGINT,
    PRIMARY KEY (sid, mark, cluster)
);
