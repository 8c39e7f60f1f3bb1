-- WARN: auditd stopped (DAEMON_END / DAEMON_ABORT) and the host was active (any other source)
-- before auditd wrote again; INFO: a stop with nothing after it at the end of the data.
WITH stops AS (
    SELECT s.host, s.ts, s.rtype, s.file, s.line,
        (SELECT min(r.ts) FROM audit_record r WHERE r.host = s.host AND r.ts > s.ts) AS resumed
    FROM audit_record s
    WHERE s.rtype IN ('DAEMON_END', 'DAEMON_ABORT')
      AND ($start::TIMESTAMPTZ IS NULL OR s.ts >= $start::TIMESTAMPTZ)
      AND ($end::TIMESTAMPTZ IS NULL OR s.ts < $end::TIMESTAMPTZ)),
judged AS (
    SELECT s.*, (SELECT count(*) FROM activity a
                 WHERE lower(a.target) = lower(s.host) AND a.source <> 'auditd'
                   AND a.ts > s.ts AND (s.resumed IS NULL OR a.ts < s.resumed)) AS active
    FROM stops s)
SELECT CASE WHEN active > 0 THEN 'WARN' ELSE 'INFO' END AS severity, host AS subject,
    'auditd stopped (' || rtype || ') at ' || strftime(ts, '%Y-%m-%d %H:%M:%S') || ' UTC'
        || CASE WHEN active > 0 THEN '; ' || active || ' action(s) on the host before it wrote '
                || 'again' ELSE '; nothing after it' END AS detail,
    json_object('file', file, 'line', line, 'stopped', ts, 'resumed', resumed,
                'actions', active) AS evidence
FROM judged
WHERE active > 0 OR resumed IS NULL
ORDER BY subject, ts
