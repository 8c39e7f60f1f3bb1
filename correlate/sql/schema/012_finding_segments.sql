-- 012_finding_segments: a run stores each action's verdict as a reference to the timeline
-- segment that decided it, and each segment's answer once (docs/performance.md).
-- Writing ten text columns for 1e7 actions took longer than judging them; a segment's
-- answer is shared by every action inside it. `findings` stays the one place readers look:
-- it is now a view with the same columns, and runs made before this version keep their rows
-- in findings_v1.
ALTER TABLE findings RENAME TO findings_v1;

-- One row per segment an action of the run fell in. Covered segments carry the winning
-- window's answer; uncovered ones the nearest windows before and after (and the approval
-- the actions cited, for actions that cite one).
CREATE TABLE run_segments (
    run_id          INTEGER NOT NULL,
    sid             BIGINT NOT NULL,
    verdict         VARCHAR,              -- NULL: no window covers the segment
    approval_source VARCHAR,
    approval_id     VARCHAR,
    ticket          VARCHAR,
    invalid_reason  VARCHAR,
    via             VARCHAR,
    prev_src        VARCHAR,              -- nearest window ending before the segment
    prev_id         VARCHAR,
    next_src        VARCHAR,              -- nearest window starting after it
    next_id         VARCHAR,
    nearest_found   BOOLEAN,              -- some applicable window exists before or after
    cited           VARCHAR               -- the approval the segment's actions cite
);

-- One row per action of the run. gap_seconds is set for out_of_window (signed: positive
-- after the nearest window's end, negative before its start); far is true when the nearest
-- window lies beyond the lookaround. sid NULL: no applicable window at all.
CREATE TABLE finding_refs (
    run_id      INTEGER NOT NULL,
    act_id      BIGINT NOT NULL,
    sid         BIGINT,
    gap_seconds DOUBLE,
    far         BOOLEAN
);

CREATE VIEW findings AS
SELECT run_id, act_id, verdict,
       CASE WHEN verdict = 'approved' THEN 'PASS'
            WHEN verdict IN ('approved_in_grace', 'break_glass') THEN 'WARN'
            ELSE 'FAIL' END AS status,
       approval_id, approval_source, ticket_id, gap_seconds, reason, match_via
FROM (
  SELECT r.run_id, r.act_id,
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
       reason, match_via
FROM findings_v1;
