-- WARN: the audit configuration changed: rules removed, auditing disabled, failure mode or
-- backlog changed, auditd's configuration reloaded (DAEMON_CONFIG); with the auid.
SELECT 'WARN' AS severity, host AS subject,
    rtype || ' at ' || strftime(ts, '%Y-%m-%d %H:%M:%S') || ' UTC by auid '
        || coalesce(nullif(nullif(regexp_extract(info, '\bauid=(\d+)', 1), ''), '4294967295'),
                    'unset') AS detail,
    json_object('file', file, 'line', line, 'text', info) AS evidence
FROM audit_record
WHERE (rtype = 'DAEMON_CONFIG' OR (rtype = 'CONFIG_CHANGE' AND info IS NOT NULL))
  AND ($start::TIMESTAMPTZ IS NULL OR ts >= $start::TIMESTAMPTZ)
  AND ($end::TIMESTAMPTZ IS NULL OR ts < $end::TIMESTAMPTZ)
ORDER BY subject, ts
