-- WARN: a supplied log file of an hour the digests cover that no digest lists.
WITH covered AS (
    SELECT account, region, min(start_ts) AS first_ts, max(end_ts) AS last_ts
    FROM ct_period GROUP BY ALL)
SELECT 'WARN' AS severity, f.local_key AS subject,
    'log file ' || f.file || ' is in hours the digests cover but no digest lists it' AS detail,
    json_object('file', f.file, 'sha256', f.sha256, 'account', f.account,
                'region', f.region) AS evidence
FROM ct_log_file f JOIN covered c
  ON c.account = f.account AND c.region = f.region
 AND f.name_ts >= c.first_ts AND f.name_ts < c.last_ts
ANTI JOIN ct_match m ON m.file = f.file
ORDER BY subject
