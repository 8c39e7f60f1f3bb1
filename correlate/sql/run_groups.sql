-- run_groups.sql: run $run_id's findings counted per account, target, source, identity kind
-- (as the source said it), verdict, status and accepted exception (schema 066). Each
-- "first" / "nearest" is min() of a struct led by its rank (time, |gap|), so it is exact and
-- ties break the same way every time. Two SELECTs, separated by a line holding only ';', give
-- the same rows (tests/test_run_groups.py compares them on every verdict path):
--
-- 1. By definition, over the `findings` view: a run loaded from Spark (findings_v1), and the
--    report's fallback for a run written before schema 066.
SELECT f.run_id, a.account, a.target, a.source, a.actor_kind, f.verdict, f.status,
       e.n AS entry, count(*) AS n, min(a.ts) AS first, max(a.ts) AS last,
       min({'ts': a.ts, 'act_id': a.act_id}) AS sample,
       min({'rank': abs(coalesce(f.gap_seconds, 0)), 'approval_id': f.approval_id,
            'via': f.match_via, 'gap': f.gap_seconds})
           FILTER (WHERE f.approval_id IS NOT NULL) AS approval,
       min({'rank': abs(coalesce(f.gap_seconds, 0)), 'ticket_id': f.ticket_id})
           FILTER (WHERE f.ticket_id IS NOT NULL) AS ticket,
       min({'ts': a.ts, 'reason': f.reason}) FILTER (WHERE f.reason IS NOT NULL) AS reason
FROM findings f JOIN activity a USING (act_id)
LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id
WHERE f.run_id = $run_id
GROUP BY f.run_id, a.account, a.target, a.source, a.actor_kind, f.verdict, f.status, e.n
;
-- 2. For a run the engine wrote (finding_refs), in half the time at 1e7 (docs/performance.md):
--    the actions are grouped first by what decides their finding (segment, side and reach of
--    the gap, failed or not), within which only the gap differs, and without the view's
--    per-action expressions; each such group is then judged once, by the view's rules (the
--    rg_* macros of run_timeline.sql), and the groups summed per verdict. The first grouping is
--    run_timeline.sql's rg_parts (finer: by timeline bin too), so the timeline bins and these
--    groups share one pass over the run's actions.
WITH refs AS (
    SELECT run_id, account, target, source, actor_kind, entry, sid, side, far, failed,
           sum(n)::BIGINT AS n, min(first) AS first, max(last) AS last, min(sample) AS sample,
           min(near) AS rank, side * min(near) AS gap
    FROM rg_parts
    GROUP BY run_id, account, target, source, actor_kind, entry, sid, side, far, failed
), judged AS (
    SELECT g.*,
           rg_raw_verdict(s.verdict, g.side) AS raw_verdict,
           CASE WHEN s.verdict IS NOT NULL THEN s.approval_id
                WHEN g.side > 0 THEN s.prev_id
                WHEN g.side < 0 THEN s.next_id END AS approval_id,
           s.ticket AS ticket_id,
           CASE WHEN s.verdict IS NOT NULL THEN s.invalid_reason
                WHEN s.cited IS NOT NULL AND NOT s.nearest_found
                  THEN 'cited approval ' || s.cited || ' not found or denied'
                WHEN s.cited IS NOT NULL THEN 'outside the cited approval ' || s.cited
                WHEN g.far THEN 'no applicable approval within the lookaround'
                WHEN g.side IS NULL THEN 'no applicable approval'
                WHEN g.side > 0 THEN 'after the end of the nearest approval'
                ELSE 'before the start of the nearest approval' END AS raw_reason,
           s.via AS match_via
    FROM refs g LEFT JOIN run_segments s ON s.run_id = g.run_id AND s.sid = g.sid
), findings AS (
    SELECT *,
           rg_verdict(failed, raw_verdict) AS verdict,
           rg_status(failed, raw_verdict) AS status,
           CASE WHEN failed
                THEN 'failed attempt, not judged as work done; as work done it would be '
                     || raw_verdict || coalesce(': ' || raw_reason, '')
                ELSE raw_reason END AS reason
    FROM judged
)
SELECT run_id, account, target, source, actor_kind, verdict, status, entry,
       sum(n)::BIGINT AS n, min(first) AS first, max(last) AS last,
       -- rg_parts' sample: (ts, act_id) as one number
       {'ts': make_timestamptz((min(sample) // 18446744073709551616
                                - 4611686018427387904)::BIGINT),
        'act_id': (min(sample) % 18446744073709551616 - 9223372036854775808)::BIGINT} AS sample,
       min({'rank': rank, 'approval_id': approval_id, 'via': match_via, 'gap': gap})
           FILTER (WHERE approval_id IS NOT NULL) AS approval,
       min({'rank': rank, 'ticket_id': ticket_id}) FILTER (WHERE ticket_id IS NOT NULL)
           AS ticket,
       min({'ts': first, 'reason': reason}) FILTER (WHERE reason IS NOT NULL) AS reason
FROM findings
GROUP BY run_id, account, target, source, actor_kind, verdict, status, entry
