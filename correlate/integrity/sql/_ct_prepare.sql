-- The digests of the period and the local file each listed log matched (key suffix, else basename).
CREATE OR REPLACE TEMP TABLE ct_period AS
SELECT * FROM ct_digest
WHERE ($start::TIMESTAMPTZ IS NULL OR end_ts > $start::TIMESTAMPTZ)
  AND ($end::TIMESTAMPTZ IS NULL OR start_ts < $end::TIMESTAMPTZ);
CREATE OR REPLACE TEMP TABLE ct_match AS
SELECT l.digest_key, l.s3_object, f.file, f.sha256
FROM ct_digest_log l JOIN ct_log_file f ON f.basename = regexp_extract(l.s3_object, '[^/]+$')
QUALIFY row_number() OVER (
    PARTITION BY l.digest_key, l.s3_object
    ORDER BY (ends_with(l.s3_object, f.local_key) OR ends_with(f.local_key, l.s3_object)) DESC,
             f.file) = 1;
