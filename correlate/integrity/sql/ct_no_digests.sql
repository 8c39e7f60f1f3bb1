-- WARN: CloudTrail log files of an account and region for which no digest was supplied.
SELECT 'WARN' AS severity, f.account || '/' || f.region AS subject,
    count(*) || ' log files but no digest files: nothing proves they are complete '
        || 'and unaltered' AS detail,
    json_object('files', count(*), 'first', min(f.name_ts), 'last', max(f.name_ts)) AS evidence
FROM ct_log_file f
WHERE ($start::TIMESTAMPTZ IS NULL OR f.name_ts >= $start::TIMESTAMPTZ)
  AND ($end::TIMESTAMPTZ IS NULL OR f.name_ts < $end::TIMESTAMPTZ)
  AND NOT EXISTS (SELECT 1 FROM ct_digest d WHERE d.account = f.account AND d.region = f.region)
GROUP BY f.account, f.region
ORDER BY subject
