-- 045_loaded_runs: a run judged elsewhere (the Spark engine, `pamcorr load-run`) is stored as
-- one finished row per action in findings_v1, which keeps the action's outcome too (exports
-- and reports read it). The view is 023's, with findings_v1's outcome instead of NULL.
ALTER TABLE findings_v1 ADD COLUMN outcome VARCHAR;

DROP VIEW findings;
CREATE VIEW findings AS
SELECT run_id, act_id,
       CASE WHEN outcome = 'failure' THEN 'attempt_failed' ELSE verdict END AS verdict,
       CASE WHEN outcome = 'failure' THEN 'INFO'
            WHEN verdict = 'approved' THEN 'PASS'
            WHEN verdict IN ('approved_in_grace', 'break_glass') THEN 'WARN'
            ELSE 'FAIL' END AS status,
       approval_id, approval_source, ticket_id, gap_seconds,
       CASE WHEN outcome = 'failure'
            THEN 'failed attempt, not judged as work done; as work done it would be ' || verdict
                 || coalesce(': ' || reason, '')
            ELSE reason END AS reason,
       match_via, outcome
FROM (
  SELECT r.run_id, r.act_id, r.outcome,
    CASE WHEN s.verdict IS NOT NULL THEN s.verdict
         WHEN r.gap_seconds IS NOT NULL THEN 'out_of_window'
         ELSE 'unapproved' END AS verdict,
    CASE WHEN s.verdict IS NOT NULL THEN s.approval_id
         WHEN r.gap_seconds > 0 THEN s.prev_id
         WHEN r.gap_seconds < 0 THEN s.next_id END AS approval_id,
    CASE WHEN s.verdict IS NOT NULL THEN s.approval_source
         WHEN r.gap_seconds > 0 THEN s.prev_src
         WHEN r.gap_seconds < 0 THEN s.next_src END AS approval_source,
    s.ticket AS ticket_id,
    r.gap_seconds,
    CASE WHEN s.verdict IS NOT NULL THEN s.invalid_reason
         WHEN s.cited IS NOT NULL AND NOT s.nearest_found
           THEN 'cited approval ' || s.cited || ' not found or denied'
         WHEN s.cited IS NOT NULL THEN 'outside the cited approval ' || s.cited
         WHEN r.far THEN 'no applicable approval within the lookaround'
         WHEN r.gap_seconds IS NULL THEN 'no applicable approval'
         WHEN r.gap_seconds > 0 THEN 'after the end of the nearest approval'
         ELSE 'before the start of the nearest approval' END AS reason,
    s.via AS match_via
  FROM finding_refs r
  LEFT JOIN run_segments s ON s.run_id = r.run_id AND s.sid = r.sid
) judged
UNION ALL
SELECT run_id, act_id, verdict, status, approval_id, approval_source, ticket_id, gap_seconds,
       reason, match_via, outcome
FROM findings_v1;
