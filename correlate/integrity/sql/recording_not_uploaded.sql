-- WARN: a Teleport SSH/Kubernetes session that ended (session.end) with no session.upload of
-- its recording, in a cluster whose log holds session.upload events of other sessions (so its
-- uploads are logged where we read). Not flagged: a session ended with session_recording off;
-- one that ended within UPLOAD_GRACE of the last event logged for its cluster (the upload may
-- simply come later); a cluster that logs no upload at all (the elastic sample, many exports).
-- Cluster: cluster_name, '' when the events carry none (older Teleport).
WITH ends AS (
    SELECT session_id AS sid, coalesce(min(json_extract_string(attrs, '$.cluster')), '')
            AS cluster,
        min(target) AS target, max(ts) AS ended
    FROM activity
    WHERE source = 'teleport' AND action = 'session.end' AND session_id IS NOT NULL
    GROUP BY session_id),
uploads AS (
    SELECT cluster, count(DISTINCT sid) AS sessions, max(ts) AS last_upload
    FROM teleport_session_mark WHERE mark = 'upload' GROUP BY cluster),
seen AS (
    SELECT coalesce(json_extract_string(attrs, '$.cluster'), '') AS cluster, max(ts) AS last_ts
    FROM activity WHERE source = 'teleport' GROUP BY ALL)
SELECT 'WARN' AS severity, e.sid AS subject,
    'session on ' || e.target || ' ended ' || strftime(e.ended, '%Y-%m-%d %H:%M:%S')
        || ' UTC; no session.upload of its recording, though cluster '
        || CASE WHEN e.cluster = '' THEN '(unnamed)' ELSE e.cluster END || ' logged '
        || u.sessions || ' upload(s) of other sessions' AS detail,
    json_object('target', e.target, 'ended', e.ended, 'cluster', e.cluster,
                'uploads_in_cluster', u.sessions, 'last_upload', u.last_upload) AS evidence
FROM ends e JOIN uploads u USING (cluster) LEFT JOIN seen s USING (cluster)
WHERE NOT EXISTS (SELECT 1 FROM teleport_session_mark m
                  WHERE m.sid = e.sid AND m.mark IN ('upload', 'recording_off'))
  AND e.ended + to_seconds($grace_s) < greatest(u.last_upload, s.last_ts)
  AND ($start::TIMESTAMPTZ IS NULL OR e.ended >= $start::TIMESTAMPTZ)
  AND ($end::TIMESTAMPTZ IS NULL OR e.ended < $end::TIMESTAMPTZ)
ORDER BY subject
