-- FAIL: a digest whose uncompressed SHA-256 is not the one the next digest recorded.
SELECT 'FAIL' AS severity, p.digest_key AS subject,
    'digest ' || p.file || ' differs from what digest ' || d.digest_key || ' recorded' AS detail,
    json_object('file', p.file, 'next', d.digest_key, 'expected', d.prev_hash,
                'actual', p.sha256) AS evidence
FROM ct_period d JOIN ct_digest p ON p.digest_key = d.prev_key
WHERE d.prev_hash_algo = 'SHA-256' AND lower(d.prev_hash) <> p.sha256
ORDER BY subject
