-- FAIL: the previous digest a digest of the period names was not supplied.
SELECT 'FAIL' AS severity, d.prev_key AS subject,
    'digest ' || d.digest_key || ' continues from ' || d.prev_key
        || ', which was not supplied' AS detail,
    json_object('next', d.digest_key, 'expected', d.prev_hash) AS evidence
FROM ct_period d
WHERE d.prev_key IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM ct_digest p WHERE p.digest_key = d.prev_key)
ORDER BY subject
