-- WARN: a starting digest (no previous one) after the chain's first: the trail stopped or changed.
SELECT 'WARN' AS severity, d.digest_key AS subject,
    'the digest chain of ' || d.account || '/' || d.region || '/' || coalesce(d.trail, '?')
        || ' starts again at ' || strftime(d.start_ts, '%Y-%m-%d %H:%M:%S') || ' UTC' AS detail,
    json_object('start', d.start_ts, 'nearby', (
        SELECT to_json(list(json_object('ts', a.ts, 'action', a.action, 'account', a.account,
                                        'actor', a.actor) ORDER BY a.ts))
        FROM activity a
        WHERE a.action IN ('cloudtrail.amazonaws.com:StopLogging',
                           'cloudtrail.amazonaws.com:StartLogging',
                           'cloudtrail.amazonaws.com:UpdateTrail',
                           'cloudtrail.amazonaws.com:DeleteTrail')
          AND a.ts BETWEEN d.start_ts - INTERVAL 6 HOUR AND d.end_ts)) AS evidence
FROM ct_period d
WHERE d.prev_key IS NULL AND NOT d.backfill
  AND EXISTS (SELECT 1 FROM ct_digest e
              WHERE e.account = d.account AND e.region IS NOT DISTINCT FROM d.region
                AND e.trail IS NOT DISTINCT FROM d.trail AND NOT e.backfill
                AND e.start_ts < d.start_ts)
ORDER BY subject
