-- FAIL: a supplied log file whose uncompressed SHA-256 is not the one its digest lists.
SELECT 'FAIL' AS severity, l.s3_object AS subject,
    'log file ' || m.file || ' differs from what digest ' || l.digest_key || ' recorded' AS detail,
    json_object('file', m.file, 'digest', l.digest_key, 'expected', l.hash_value,
                'actual', m.sha256) AS evidence
FROM ct_digest_log l JOIN ct_period d USING (digest_key)
JOIN ct_match m ON m.digest_key = l.digest_key AND m.s3_object = l.s3_object
WHERE l.hash_algo = 'SHA-256' AND lower(l.hash_value) <> m.sha256
ORDER BY subject
