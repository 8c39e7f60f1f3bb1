-- WARN: a Teleport session with no session.end though Teleport reported its target for more
-- than 24 hours after it started (up to the end of the period): the end was lost or removed.
WITH s AS (
    SELECT lower(target) AS t, any_value(target) AS target, session_id,
        min(ts) FILTER (WHERE action = 'session.start') AS started,
        count(*) FILTER (WHERE action = 'session.end') AS ends
    FROM activity WHERE source = 'teleport' AND session_id IS NOT NULL
    GROUP BY lower(target), session_id),
seen AS (
    SELECT lower(target) AS t, max(ts) AS last_ts FROM activity
    WHERE source = 'teleport'
      AND ($end::TIMESTAMPTZ IS NULL OR ts < $end::TIMESTAMPTZ)
    GROUP BY ALL)
SELECT 'WARN' AS severity, s.session_id AS subject,
    'session on ' || s.target || ' started ' || strftime(s.started, '%Y-%m-%d %H:%M:%S')
        || ' UTC has no session.end though Teleport reported ' || s.target
        || ' until ' || strftime(seen.last_ts, '%Y-%m-%d %H:%M:%S') || ' UTC' AS detail,
    json_object('target', s.target, 'started', s.started, 'seen_until', seen.last_ts)
        AS evidence
FROM s JOIN seen USING (t)
WHERE s.started IS NOT NULL AND s.ends = 0 AND seen.last_ts > s.started + INTERVAL 24 HOUR
  AND ($start::TIMESTAMPTZ IS NULL OR s.started >= $start::TIMESTAMPTZ - INTERVAL 7 DAY)
ORDER BY subject
