-- FAIL: a file in a CloudTrail-Digest folder that is not a readable digest (quarantined).
SELECT 'FAIL' AS severity, file AS subject, reason AS detail,
    json_object('file', file, 'reason', reason) AS evidence
FROM ct_digest_invalid ORDER BY subject
