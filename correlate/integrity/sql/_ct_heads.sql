-- The newest (non-backfill) digest of each chain in the period: its head.
SELECT account || '/' || coalesce(region, '?') || '/' || coalesce(trail, '?') AS chain,
    digest_key, sha256, end_ts
FROM ct_period WHERE NOT backfill
QUALIFY row_number() OVER (PARTITION BY account, region, trail ORDER BY end_ts DESC) = 1
ORDER BY chain
