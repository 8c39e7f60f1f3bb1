-- WARN: a Teleport session event recorded after that session's session.end.
WITH ends AS (
    SELECT session_id, max(ts) AS ended FROM activity
    WHERE source = 'teleport' AND action = 'session.end' GROUP BY ALL)
SELECT 'WARN' AS severity, a.session_id AS subject,
    count(*) || ' event(s) after the session ended at '
        || strftime(e.ended, '%Y-%m-%d %H:%M:%S') || ' UTC, first ' || min(a.action) AS detail,
    json_object('ended', e.ended, 'first', min(a.ts), 'last', max(a.ts)) AS evidence
FROM activity a JOIN ends e USING (session_id)
WHERE a.source = 'teleport' AND a.ts > e.ended
  AND ($start::TIMESTAMPTZ IS NULL OR a.ts >= $start::TIMESTAMPTZ)
  AND ($end::TIMESTAMPTZ IS NULL OR a.ts < $end::TIMESTAMPTZ)
GROUP BY a.session_id, e.ended
ORDER BY subject
