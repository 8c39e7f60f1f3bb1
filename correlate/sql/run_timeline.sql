-- run_timeline.sql: what `correlate` writes for the gap report after the run's findings,
-- exceptions and detections (correlate/run_groups.py): one pass over the run's actions grouped
-- finely enough for both the report's groups (run_groups, schema 066) and its busy accounts'
-- timeline bins (schema 068), then each rolled up from that. Statements are separated by lines
-- holding only ';'. Scratch tables rg_* are the connection's and dropped after the run.
--
-- The period the timelines span, as the report takes it: the run's, else its first and last
-- action. Seconds from microseconds, as Python's datetime.timestamp() gives them.
CREATE OR REPLACE TEMP TABLE rg_period AS
SELECT epoch_us(p0) / 1e6 AS t0, greatest((epoch_us(p1) - epoch_us(p0)) / 1e6, 1.0) AS span
FROM (SELECT coalesce($start, min(ts)) AS p0, coalesce($end, max(ts)) AS p1
      FROM activity WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end))
;
-- The findings view's rules (schema 045: keep them in step) as macros, for both statements
-- that judge the run's parts here (the groups, correlate/sql/run_groups.sql, and the bins):
-- the verdict from the part's segment and gap side, and the status of a verdict.
CREATE OR REPLACE TEMP MACRO rg_raw_verdict(segment_verdict, side) AS
    CASE WHEN segment_verdict IS NOT NULL THEN segment_verdict
         WHEN side IS NOT NULL THEN 'out_of_window'
         ELSE 'unapproved' END
;
CREATE OR REPLACE TEMP MACRO rg_verdict(failed, raw_verdict) AS
    CASE WHEN failed THEN 'attempt_failed' ELSE raw_verdict END
;
CREATE OR REPLACE TEMP MACRO rg_status(failed, raw_verdict) AS
    CASE WHEN failed THEN 'INFO'
         WHEN raw_verdict = 'approved' THEN 'PASS'
         WHEN raw_verdict IN ('approved_in_grace', 'break_glass') THEN 'WARN'
         ELSE 'FAIL' END
;
-- Each flagged action's rules (as bits: bit i is the run's i-th rule by id), worst severity
-- and review, and whether it is in a sequence.
CREATE OR REPLACE TEMP TABLE rg_marks AS
WITH rules AS (
    SELECT rule_id, severity,
           set_bit(repeat('0', count(*) OVER ())::BIT,
                   (row_number() OVER (ORDER BY rule_id) - 1)::INTEGER, 1) AS mask
    FROM detection_rules WHERE run_id = $run_id
)
SELECT d.act_id, bit_or(r.mask) AS rules,
       coalesce(max(list_position($severities, r.severity)), 0) AS sev,
       min(CASE d.review WHEN 'FAIL' THEN 1 WHEN 'needs_review' THEN 2 ELSE 3 END) AS rev,
       bool_or(d.sequence_id IS NOT NULL) AS in_sequence
FROM detections d JOIN rules r USING (rule_id)
WHERE d.run_id = $run_id
GROUP BY d.act_id
;
-- The few distinct (rules, severity, review) of the flagged actions (12 at 1e7), numbered: the
-- pass below carries that number instead of the rules and reviews themselves, which made it
-- twice as dear.
CREATE OR REPLACE TEMP TABLE rg_signs AS
SELECT rules, sev, rev, row_number() OVER ()::INTEGER AS sign
FROM (SELECT DISTINCT rules, sev, rev FROM rg_marks)
;
-- seq_act: the action's own id when it is in a sequence (its sequences: rg_sequences), so a
-- bin knows its sequences without a list per group here.
CREATE OR REPLACE TEMP TABLE rg_flags AS
SELECT m.act_id, s.sign, CASE WHEN m.in_sequence THEN m.act_id END AS seq_act
FROM rg_marks m JOIN rg_signs s USING (rules, sev, rev)
;
CREATE OR REPLACE TEMP TABLE rg_sequences AS
SELECT act_id, list(sequence_id) AS sequences FROM detections
WHERE run_id = $run_id AND sequence_id IS NOT NULL
GROUP BY act_id
;
-- The run's actions grouped by what decides their finding (segment, side and reach of the
-- gap, failed or not; within such a group only the gap differs), by what a group of the report
-- is (account, target, source, identity kind, exception) and by timeline bin (pixel column,
-- flags). About 1.8 M rows for 1e7 actions. The first action (`sample`) is one number, (ts,
-- act_id) in the order min() of the struct gives, and the nearest gap its absolute value (the
-- side is a key, so the gap is side * near): min() of a struct costs several times min() of a
-- number. Both halves of `sample` are offset to be positive (// and % truncate toward zero).
CREATE OR REPLACE TEMP TABLE rg_parts AS
SELECT $run_id AS run_id, a.account, a.target, a.source, a.actor_kind, e.n AS entry, r.sid,
       sign(r.gap_seconds) AS side, r.far, coalesce(r.outcome = 'failure', false) AS failed,
       f.sign, f.seq_act,
       floor(greatest(0, least(1, (epoch(a.ts) - p.t0) / p.span)) * $width)::INTEGER AS col,
       count(*) AS n, min(a.ts) AS first, max(a.ts) AS last,
       min((epoch_us(a.ts)::HUGEINT + 4611686018427387904) * 18446744073709551616
           + (a.act_id::HUGEINT + 9223372036854775808)) AS sample,
       min(abs(coalesce(r.gap_seconds, 0))) AS near
FROM finding_refs r JOIN activity a USING (act_id)
LEFT JOIN finding_exceptions e ON e.run_id = r.run_id AND e.act_id = r.act_id
LEFT JOIN rg_flags f ON f.act_id = r.act_id
CROSS JOIN rg_period p
WHERE r.run_id = $run_id
GROUP BY a.account, a.target, a.source, a.actor_kind, e.n, r.sid, side, r.far, failed, f.sign,
         f.seq_act, col
;
-- (correlate/run_groups.py runs run_groups.sql's FROM_PARTS here: the groups.)
INSERT INTO run_timelines SELECT $run_id, t0, span, $width, $above FROM rg_period
WHERE t0 IS NOT NULL
;
-- The bins of each account with more than $above actions: as reports/gaps.py TIMELINE_BINS_SQL
-- bins the actions (verdict and status by the rg_* macros above).
INSERT INTO run_timeline_bins
WITH judged AS (
    SELECT p.account, p.col, p.sign IS NOT NULL AS flagged, p.n, p.first, p.target, g.rules,
           g.sev, g.rev, q.sequences,
           rg_verdict(p.failed, rg_raw_verdict(s.verdict, p.side)) AS verdict,
           rg_status(p.failed, rg_raw_verdict(s.verdict, p.side)) AS status
    FROM rg_parts p LEFT JOIN run_segments s ON s.run_id = $run_id AND s.sid = p.sid
    LEFT JOIN rg_signs g ON g.sign = p.sign
    LEFT JOIN rg_sequences q ON q.act_id = p.seq_act
    WHERE p.col IS NOT NULL AND p.account IN (
        SELECT account FROM run_groups WHERE run_id = $run_id
        GROUP BY account HAVING sum(n) > $above)
), bins AS (
    SELECT account, col, status, flagged, sum(n)::BIGINT AS n, min(first) AS ts,
           string_agg(DISTINCT verdict, ', ' ORDER BY verdict) AS verdicts, min(target) AS target,
           bit_or(rules) AS rules, nullif(max(sev), 0) AS sev, min(rev) AS rev,
           list_sort(list_distinct(flatten(list(sequences) FILTER (WHERE sequences IS NOT NULL))))
               AS sequences
    FROM judged GROUP BY ALL
)
SELECT $run_id, b.account, b.col, b.status, b.flagged, b.n, b.ts, b.verdicts, b.target,
       CASE WHEN b.flagged
            THEN list_filter(names.rules, lambda x, i: get_bit(b.rules, (i - 1)::INTEGER) = 1)
       END,
       $severities[b.sev], ['FAIL', 'needs_review', 'MUTED'][b.rev], b.sequences
FROM bins b
CROSS JOIN (SELECT list(rule_id ORDER BY rule_id) AS rules FROM detection_rules
            WHERE run_id = $run_id) names
