-- WARN: a hash or signature algorithm pamcorr cannot check.
SELECT 'WARN' AS severity, digest_key AS subject,
    'unsupported ' || what || ' ' || algo || ': not checked' AS detail,
    json_object('algorithm', algo) AS evidence
FROM (
    SELECT digest_key, 'signature algorithm' AS what, sig_algo AS algo FROM ct_period
    WHERE sig_algo IS NOT NULL AND sig_algo <> 'SHA256withRSA'
    UNION ALL
    SELECT digest_key, 'hash algorithm', prev_hash_algo FROM ct_period
    WHERE prev_hash_algo IS NOT NULL AND prev_hash_algo <> 'SHA-256'
    UNION ALL
    SELECT DISTINCT l.digest_key, 'log hash algorithm', l.hash_algo
    FROM ct_digest_log l JOIN ct_period USING (digest_key)
    WHERE l.hash_algo IS NOT NULL AND l.hash_algo <> 'SHA-256')
ORDER BY subject
