-- FAIL: the kernel says it dropped audit records (audit_lost=N, backlog limit exceeded).
SELECT 'FAIL' AS severity, host AS subject,
    'the kernel lost audit records: ' || info AS detail,
    json_object('file', file, 'line', line, 'text', info) AS evidence
FROM audit_lost ORDER BY subject, file, line
