-- WARN: during a session (Teleport, sshd, PSM) on a target, another source that reported that
-- target before and after the session has no rows at all between its start and end.
WITH sessions AS (
    SELECT source, lower(target) AS t, any_value(target) AS target, session_id,
        min(ts) AS first_ts, max(ts) AS last_ts
    FROM activity
    WHERE source IN ('teleport', 'syslog', 'cyberark') AND session_id IS NOT NULL
    GROUP BY source, lower(target), session_id
    HAVING max(ts) > min(ts)),
per AS (
    SELECT source, lower(target) AS t, min(ts) AS first_ts, max(ts) AS last_ts
    FROM activity GROUP BY ALL)
SELECT 'WARN' AS severity, p.source || ' on ' || s.target AS subject,
    p.source || ' sent nothing for ' || s.target || ' during ' || s.source || ' session '
        || s.session_id || ' (' || strftime(s.first_ts, '%Y-%m-%d %H:%M:%S') || ' .. '
        || strftime(s.last_ts, '%Y-%m-%d %H:%M:%S') || ' UTC) though it did before and after'
        AS detail,
    json_object('source', p.source, 'target', s.target, 'session', s.session_id,
                'session_source', s.source, 'from', s.first_ts, 'to', s.last_ts) AS evidence
FROM sessions s JOIN per p ON p.t = s.t AND p.source <> s.source
    AND p.first_ts < s.first_ts AND p.last_ts > s.last_ts
WHERE ($start::TIMESTAMPTZ IS NULL OR s.last_ts >= $start::TIMESTAMPTZ)
  AND ($end::TIMESTAMPTZ IS NULL OR s.first_ts < $end::TIMESTAMPTZ)
  AND NOT EXISTS (SELECT 1 FROM activity a WHERE a.source = p.source AND lower(a.target) = s.t
                  AND a.ts BETWEEN s.first_ts AND s.last_ts)
ORDER BY subject, s.session_id
