-- FAIL: a digest found at another path than its own digestS3Object.
SELECT 'FAIL' AS severity, d.digest_key AS subject,
    'digest read from ' || d.file || ' says it is ' || d.digest_key AS detail,
    json_object('file', d.file, 'digestS3Object', d.digest_key) AS evidence
FROM ct_period d
WHERE NOT (ends_with(d.digest_key, d.local_key) OR ends_with(d.local_key, d.digest_key))
ORDER BY subject
