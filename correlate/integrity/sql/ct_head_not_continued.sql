-- FAIL (reported as ct_digest_missing): a chain of the period does not continue from the head
-- an earlier period recorded: its first digest names another previous digest.
WITH heads AS (
    SELECT chain, digest_key, sha256, end_ts FROM integrity_chain_head
    WHERE $start::TIMESTAMPTZ IS NOT NULL AND period_end <= $start::TIMESTAMPTZ
    QUALIFY row_number() OVER (PARTITION BY chain ORDER BY period_end DESC, end_ts DESC) = 1),
firsts AS (
    SELECT account || '/' || coalesce(region, '?') || '/' || coalesce(trail, '?') AS chain,
        digest_key, prev_key, prev_hash
    FROM ct_period WHERE NOT backfill
    QUALIFY row_number() OVER (PARTITION BY account, region, trail ORDER BY start_ts) = 1)
SELECT 'FAIL' AS severity, h.digest_key AS subject,
    'chain ' || f.chain || ' starts at ' || f.digest_key || ', which does not continue from '
        || 'the head recorded before, ' || h.digest_key AS detail,
    json_object('chain', f.chain, 'recorded_head', h.digest_key, 'recorded_sha256', h.sha256,
                'first', f.digest_key, 'previous', f.prev_key) AS evidence
FROM firsts f JOIN heads h USING (chain)
WHERE f.digest_key <> h.digest_key
  AND (f.prev_key IS DISTINCT FROM h.digest_key OR lower(f.prev_hash) IS DISTINCT FROM h.sha256)
ORDER BY subject
