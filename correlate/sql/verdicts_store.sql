-- verdicts_store.sql: what run $run_id keeps, from the scratch tables of verdicts.sql.
-- Each segment's answer once, then one narrow row per action; the `findings` view joins them
-- (schema 012). Statements are separated by lines holding only ';'.
INSERT INTO run_segments (run_id, sid, verdict, approval_source, approval_id, ticket,
                          invalid_reason, via, prev_src, prev_id, next_src, next_id,
                          nearest_found, cited)
SELECT $run_id, sid, verdict, approval_source, approval_id, ticket, invalid_reason, via,
       NULL, NULL, NULL, NULL, true, NULL
FROM best
UNION ALL
SELECT $run_id, n.sid, NULL, NULL, NULL, NULL, NULL, NULL, n.prev_src, n.prev_id, n.next_src,
       n.next_id, n.prev_us IS NOT NULL OR n.next_us IS NOT NULL, r.approval_ref
FROM nearest n LEFT JOIN ref_keys r ON r.key_id = n.key_id
;
-- The gap to the nearest window is the action's own: positive after the end of the window
-- that ended before it, negative before the start of the one after; the nearer one counts
-- (the earlier window on a tie).
-- outcome: what the source says came of the action; the view turns 'failure' into
-- attempt_failed (schema 023), so a failed attempt costs no join here.
INSERT INTO finding_refs (run_id, act_id, sid, gap_seconds, far, outcome)
SELECT $run_id, act_id, sid,
       CASE WHEN abs(near_gap) <= $lookaround THEN near_gap END,
       CASE WHEN abs(near_gap) > $lookaround THEN true END, outcome
FROM (
  SELECT h.act_id, h.sid, h.outcome,
         CASE WHEN n.prev_us IS NULL AND n.next_us IS NULL THEN NULL
              WHEN n.next_us IS NULL OR (n.prev_us IS NOT NULL
                                         AND h.ts_us - n.prev_us <= n.next_us - h.ts_us)
                THEN (h.ts_us - n.prev_us) / 1e6
              ELSE (h.ts_us - n.next_us) / 1e6 END AS near_gap
  FROM hits h LEFT JOIN nearest n ON n.sid = h.sid
)
