-- Input integrity (issue 20): CloudTrail digest files, local log-file hashes, keys and findings.
CREATE TABLE IF NOT EXISTS ct_digest (
    digest_key VARCHAR PRIMARY KEY,      -- digestS3Object
    bucket VARCHAR, account VARCHAR, region VARCHAR, trail VARCHAR,
    start_ts TIMESTAMPTZ, end_ts TIMESTAMPTZ, end_text VARCHAR,
    prev_bucket VARCHAR, prev_key VARCHAR, prev_hash VARCHAR, prev_hash_algo VARCHAR,
    prev_sig VARCHAR, sig_algo VARCHAR, key_fp VARCHAR,
    sha256 VARCHAR,                      -- of the uncompressed digest file as read
    file VARCHAR, local_key VARCHAR, backfill BOOLEAN, ingested TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS ct_digest_log (
    digest_key VARCHAR, s3_bucket VARCHAR, s3_object VARCHAR, hash_value VARCHAR,
    hash_algo VARCHAR, oldest_ts VARCHAR, newest_ts VARCHAR
);
CREATE TABLE IF NOT EXISTS ct_digest_invalid (
    file VARCHAR PRIMARY KEY, reason VARCHAR, ingested TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS ct_log_file (
    file VARCHAR PRIMARY KEY, local_key VARCHAR, basename VARCHAR, sha256 VARCHAR,
    account VARCHAR, region VARCHAR, name_ts TIMESTAMPTZ, hashed TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS ct_public_key (
    fingerprint VARCHAR PRIMARY KEY, der BLOB, file VARCHAR
);
CREATE TABLE IF NOT EXISTS ct_digest_signature (
    digest_key VARCHAR PRIMARY KEY, signature VARCHAR, file VARCHAR
);
CREATE SEQUENCE IF NOT EXISTS integrity_finding_seq;
CREATE TABLE IF NOT EXISTS integrity_findings (
    finding_id BIGINT DEFAULT nextval('integrity_finding_seq'),
    period_start TIMESTAMPTZ, period_end TIMESTAMPTZ, checked TIMESTAMPTZ,
    check_id VARCHAR, severity VARCHAR, source VARCHAR, subject VARCHAR, detail VARCHAR,
    evidence JSON
);
