-- FAIL: a log file a digest of the period lists that was not supplied.
SELECT 'FAIL' AS severity, l.s3_object AS subject,
    'listed by digest ' || l.digest_key || ' but not supplied' AS detail,
    json_object('digest', l.digest_key, 'expected', l.hash_value,
                'oldest', l.oldest_ts, 'newest', l.newest_ts) AS evidence
FROM ct_digest_log l JOIN ct_period d USING (digest_key)
ANTI JOIN ct_match m ON m.digest_key = l.digest_key AND m.s3_object = l.s3_object
ORDER BY subject
