-- verdicts.sql: one verdict per activity row in [$start, $end), written to findings for $run_id.
-- The rules are docs/verdicts.md. Method (see docs/performance.md):
--   1. expand applicable approvals to the (account, target) keys they cover (glob, case-insensitive);
--   2. cut each key's timeline at every point where any rule input can change (window and grace
--      bounds, ticket opened/closed/planned bounds, status transitions, break-glass 24 h limit);
--   3. judge each segment once at its first instant, weighing ALL windows that cover it
--      (a plain ASOF join to the latest-starting window is wrong for nested windows);
--   4. one ASOF join gives every action its segment's answer; gaps are computed per action.
-- Statements are separated by lines holding only ';'.

CREATE OR REPLACE TEMP TABLE run_keys AS
SELECT DISTINCT key_id FROM activity
WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)
;
-- Actions that cite their approval (Teleport access_requests[], a CyberArk checkout before its
-- PSM session) are judged against that approval only: the explicit link beats time matching.
-- Each cited approval id gets its own negative pseudo key.
CREATE OR REPLACE TEMP TABLE ref_keys AS
SELECT approval_ref, -row_number() OVER (ORDER BY approval_ref)::BIGINT AS key_id
FROM (SELECT DISTINCT approval_ref FROM activity
      WHERE approval_ref IS NOT NULL
        AND ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end))
;
-- identities.csv: every alias of an identity matches it (DOMAIN\alice, alice@corp, Alice).
CREATE OR REPLACE TEMP TABLE key_ident AS
SELECT k.key_id, k.account_norm, k.target_norm, coalesce(lower(i.identity), k.account_norm) AS ident
FROM activity_keys k SEMI JOIN run_keys r ON r.key_id = k.key_id
LEFT JOIN identities i ON i.alias_norm = k.account_norm
;
-- targets.csv: a key's target also answers to its aliases and its groups (a safe, a role).
CREATE OR REPLACE TEMP TABLE key_names AS
SELECT key_id, target_norm AS name, NULL::VARCHAR AS via FROM key_ident
UNION
SELECT k.key_id, t.alias_norm, 'target alias ' || t.alias_norm
FROM key_ident k JOIN targets t ON t.name_norm = k.target_norm WHERE t.alias_norm IS NOT NULL
UNION
SELECT k.key_id, t.name_norm, 'target alias of ' || t.name_norm
FROM key_ident k JOIN targets t ON t.alias_norm = k.target_norm
UNION
SELECT k.key_id, lower(t.grp), 'target group ' || t.grp
FROM key_ident k JOIN targets t ON t.name_norm = k.target_norm OR t.alias_norm = k.target_norm
WHERE t.grp IS NOT NULL
;
-- Applicable approvals, one row per granted target (approvals.targets lists several when an
-- approval grants more than one). A table, not a CTE: the joins below need its statistics
-- (with a CTE the planner chose a nested-loop GLOB join, 30x slower at 1e7).
CREATE OR REPLACE TEMP TABLE ap AS
SELECT source, approval_id, kind, ticket, account, account_norm, lower(tgt) AS target_norm,
       ident, regexp_matches(tgt, '[*?\[]') AS is_glob, ws, we
FROM (
    SELECT a.source, a.approval_id, a.kind, a.ticket, a.account,
           lower(a.account) AS account_norm,
           unnest(CASE WHEN len(a.targets) > 0 THEN a.targets ELSE [a.target] END) AS tgt,
           coalesce(lower(ai.identity), lower(a.account)) AS ident,
           a.start_ts AS ws, a.window_end AS we
    FROM approval_windows a LEFT JOIN identities ai ON ai.alias_norm = lower(a.account)
    WHERE a.status <> 'denied')
;
-- Glob targets: each distinct pattern of an identity's approvals is tried once against that
-- identity's keys, then every approval with that pattern takes its matches (at 1e7 in the
-- benchmark, 1,697 distinct patterns for 8,672 glob rows: 8 M GLOBs instead of 41 M).
CREATE OR REPLACE TEMP TABLE glob_keys AS
SELECT p.ident, p.target_norm, k.key_id, k.account_norm, n.via
FROM (SELECT DISTINCT ident, target_norm FROM ap WHERE is_glob) p
JOIN key_ident k ON k.ident = p.ident
JOIN key_names n ON n.key_id = k.key_id AND n.name GLOB p.target_norm
;
-- Exact targets join on equality; glob targets take glob_keys' matches.
CREATE OR REPLACE TEMP TABLE matched AS
SELECT k.key_id, k.account_norm AS key_account, n.via AS target_via, ap.*
FROM ap JOIN key_ident k ON k.ident = ap.ident
JOIN key_names n ON n.key_id = k.key_id AND n.name = ap.target_norm
WHERE NOT ap.is_glob
UNION ALL
SELECT g.key_id, g.account_norm, g.via, ap.*
FROM ap JOIN glob_keys g ON g.ident = ap.ident AND g.target_norm = ap.target_norm
WHERE ap.is_glob
;
CREATE OR REPLACE TEMP TABLE win AS
SELECT r.key_id, a.source AS approval_source, a.approval_id, a.kind, a.ticket, a.start_ts AS ws,
       a.window_end AS we, 'cited by the action' AS via
FROM ref_keys r JOIN approval_windows a ON a.approval_id = r.approval_ref
WHERE a.status <> 'denied'
UNION ALL
SELECT key_id, source, approval_id, kind, ticket, ws, we,
       nullif(concat_ws('; ',
         CASE WHEN account_norm <> key_account
              THEN 'identity ' || account || ' = ' || key_account END,
         target_via), '') AS via
FROM matched
QUALIFY row_number() OVER (PARTITION BY key_id, source, approval_id
                           ORDER BY target_via NULLS FIRST) = 1
;
DELETE FROM win WHERE we < ws   -- revoked before it began: never in force
;
CREATE OR REPLACE TEMP TABLE ticket_points AS
SELECT ticket_id, p FROM (
    SELECT ticket_id, opened AS p FROM tickets
    UNION ALL SELECT ticket_id, opened - INTERVAL 24 HOUR FROM tickets
    UNION ALL SELECT ticket_id, closed + INTERVAL 1 MICROSECOND FROM tickets WHERE closed IS NOT NULL
    UNION ALL SELECT ticket_id, CASE WHEN $actual_window THEN work_start ELSE planned_start END
              FROM tickets
    UNION ALL SELECT ticket_id,
                     CASE WHEN $actual_window THEN work_end ELSE planned_end END + INTERVAL 1 MICROSECOND
              FROM tickets
    UNION ALL SELECT ticket_id, ts FROM ticket_history
) WHERE p IS NOT NULL AND ticket_id IN (SELECT ticket FROM win)
;
CREATE OR REPLACE TEMP TABLE seg AS
SELECT key_id, p, row_number() OVER ()::BIGINT AS sid FROM (SELECT DISTINCT key_id, p FROM (
    SELECT key_id, ws - to_seconds($grace) AS p FROM win
    UNION ALL SELECT key_id, ws FROM win
    UNION ALL SELECT key_id, we + INTERVAL 1 MICROSECOND FROM win
    UNION ALL SELECT key_id, we + to_seconds($grace) + INTERVAL 1 MICROSECOND FROM win
    UNION ALL SELECT key_id, '-infinity'::TIMESTAMPTZ FROM win
    -- a ticket's change points matter only where a window citing it is in force
    UNION ALL SELECT w.key_id, t.p FROM win w JOIN ticket_points t ON t.ticket_id = w.ticket
              WHERE t.p > w.ws - to_seconds($grace) AND t.p <= w.we + to_seconds($grace)
    -- an action citing an approval that has no window still gets a segment (and its reason)
    UNION ALL SELECT key_id, '-infinity'::TIMESTAMPTZ FROM ref_keys
))
;
-- Every action of the period with the segment it falls in (one ASOF join on integer keys).
-- sid is NULL when no applicable window exists for the action's key at all.
CREATE OR REPLACE TEMP TABLE hits AS
SELECT a.act_id, epoch_us(a.ts) AS ts_us, g.sid, a.outcome
FROM (SELECT act.act_id, coalesce(r.key_id, act.key_id) AS key_id, act.ts, act.outcome
      FROM activity act LEFT JOIN ref_keys r ON r.approval_ref = act.approval_ref
      WHERE ($start IS NULL OR act.ts >= $start) AND ($end IS NULL OR act.ts < $end)) a
ASOF LEFT JOIN seg g ON g.key_id = a.key_id AND a.ts >= g.p
;
-- Only segments some action falls in are judged (about a third of them in the benchmark).
-- With the work done in each, read by the approval hygiene checks (hygiene.sql) in the same
-- pass over the actions: actions that are not failed attempts, the first and the last of them.
CREATE OR REPLACE TEMP TABLE seg_used AS
SELECT s.key_id, s.p, s.sid, h.n, h.lo, h.hi FROM seg s JOIN (
    SELECT sid, count(*) FILTER (WHERE outcome IS DISTINCT FROM 'failure') AS n,
           min(ts_us) FILTER (WHERE outcome IS DISTINCT FROM 'failure') AS lo,
           max(ts_us) FILTER (WHERE outcome IS DISTINCT FROM 'failure') AS hi
    FROM hits GROUP BY sid) h ON h.sid = s.sid
;
-- Every window covering a segment's first instant (widened by grace), judged there.
-- (n, lo, hi: the segment's work, for hygiene.sql)
CREATE OR REPLACE TEMP TABLE cand AS
SELECT s.key_id, s.p, s.sid, s.n, s.lo, s.hi,
       w.approval_source, w.approval_id, w.kind, w.ticket, w.ws, w.we, w.via,
       t.ticket_id AS t_id, t.status AS t_status, t.opened, t.closed,
       CASE WHEN $actual_window THEN t.work_start ELSE t.planned_start END AS planned_start,
       CASE WHEN $actual_window THEN t.work_end ELSE t.planned_end END AS planned_end
FROM seg_used s
JOIN win w ON w.key_id = s.key_id
          AND s.p >= w.ws - to_seconds($grace)
          AND s.p <= w.we + to_seconds($grace)
LEFT JOIN tickets t ON t.ticket_id = w.ticket
;
-- A change's approval records (ServiceNow sysapproval_approver, as last fetched): one rejected,
-- or one still requested, and the change does not permit work, whatever its state.
CREATE OR REPLACE TEMP TABLE ticket_appr AS
SELECT ticket_id, bool_or(lower(state) = 'rejected') AS rejected,
       bool_or(lower(state) = 'requested') AS pending
FROM ticket_approvals WHERE ticket_id IN (SELECT ticket FROM win)
GROUP BY ticket_id
;
-- Ticket ids match exactly; a cited id that is not on record but differs only in case from one
-- that is gets "did you mean <id>" in its ticket_not_found reason (the smallest such id).
CREATE OR REPLACE TEMP TABLE ticket_case AS
SELECT r.ticket, min(t.ticket_id) AS near
FROM (SELECT DISTINCT ticket FROM win WHERE ticket IS NOT NULL) r
JOIN tickets t ON lower(t.ticket_id) = lower(r.ticket) AND t.ticket_id <> r.ticket
WHERE NOT EXISTS (SELECT 1 FROM tickets x WHERE x.ticket_id = r.ticket)
GROUP BY r.ticket
;
CREATE OR REPLACE TEMP TABLE cand_status AS
SELECT c.key_id, c.p, c.ticket,
       bool_or(h.ticket_id IS NOT NULL) AS has_history,
       -- two transitions in the same instant: fail closed (a status that does not permit
       -- work wins), then by name, so every run resolves them the same way
       arg_max(h.status, struct_pack(t := h.ts, closed := h.status NOT IN ('approved', 'in_progress'),
                                     s := h.status)) FILTER (WHERE h.ts <= c.p) AS status_at
FROM (SELECT DISTINCT key_id, p, ticket FROM cand WHERE ticket IS NOT NULL) c
JOIN ticket_history h ON h.ticket_id = c.ticket
GROUP BY ALL
;
CREATE OR REPLACE TEMP TABLE judged AS
SELECT c.*, v.verdict, v.invalid_reason,
       CASE v.verdict WHEN 'approved' THEN 1 WHEN 'approved_in_grace' THEN 2
            WHEN 'break_glass' THEN 3 WHEN 'ticket_invalid' THEN 4
            WHEN 'ticket_missing' THEN 5 ELSE 6 END AS rank
FROM (
  SELECT c.*,
    -- a cancelled or rejected ticket is no review of a break-glass use: its status at the
    -- action's time (history) or its current status
    CASE WHEN cs.status_at IN ('cancelled', 'rejected')
           THEN cs.status_at || ' at the time of the action'
         WHEN c.t_status IN ('cancelled', 'rejected') THEN c.t_status || ' (current status)'
    END AS bg_void,
    CASE
      WHEN c.t_id IS NULL THEN coalesce(
        (SELECT u.reason FROM ticket_unverifiable u WHERE u.ticket_id = c.ticket),
        'ticket_not_found' || coalesce(' (did you mean ' || tc.near || '?)', ''))
      WHEN cs.has_history AND cs.status_at IS NULL THEN 'ticket_no_status_yet'
      WHEN cs.has_history AND cs.status_at NOT IN ('approved', 'in_progress')
        THEN 'ticket_status_' || cs.status_at
      WHEN NOT coalesce(cs.has_history, false) AND c.p < c.opened THEN 'ticket_not_open_yet'
      WHEN NOT coalesce(cs.has_history, false) AND c.closed IS NOT NULL AND c.p > c.closed
        THEN 'ticket_closed'
      -- fail closed: a status not known to permit work (unknown:*, a custom state) never does
      WHEN NOT coalesce(cs.has_history, false)
           AND c.t_status NOT IN ('approved', 'in_progress', 'resolved', 'closed')
        THEN 'ticket_status_' || c.t_status
      WHEN ta.rejected THEN 'ticket_approval_rejected'
      WHEN ta.pending THEN 'ticket_approval_pending'
      WHEN c.planned_start IS NOT NULL AND c.p < c.planned_start THEN 'outside_planned_window'
      WHEN c.planned_end IS NOT NULL AND c.p > c.planned_end THEN 'outside_planned_window'
    END AS ticket_problem
  FROM cand c
  LEFT JOIN cand_status cs ON cs.key_id = c.key_id AND cs.p = c.p AND cs.ticket = c.ticket
  LEFT JOIN ticket_appr ta ON ta.ticket_id = c.t_id
  LEFT JOIN ticket_case tc ON tc.ticket = c.ticket
) c,
LATERAL (SELECT
  CASE
    WHEN c.kind = 'break_glass' THEN
      CASE WHEN c.t_id IS NOT NULL AND c.opened <= c.p + INTERVAL 24 HOUR AND c.bg_void IS NULL
           THEN 'break_glass' ELSE 'break_glass_unreviewed' END
    WHEN c.ticket IS NULL THEN 'ticket_missing'
    WHEN c.ticket_problem IS NOT NULL THEN 'ticket_invalid'
    WHEN c.p >= c.ws AND c.p <= c.we THEN 'approved'
    ELSE 'approved_in_grace'
  END AS verdict,
  CASE WHEN c.kind = 'break_glass' AND c.t_id IS NULL AND c.ticket IS NOT NULL
         THEN 'break_glass ticket not found'
       WHEN c.kind = 'break_glass' AND c.t_id IS NULL THEN 'break_glass without ticket'
       WHEN c.kind = 'break_glass' AND c.opened > c.p + INTERVAL 24 HOUR
         THEN 'break_glass ticket opened more than 24 h after the action'
       WHEN c.kind = 'break_glass' AND c.bg_void IS NOT NULL
         THEN 'break_glass ticket ' || c.ticket || ' is no review: ' || c.bg_void
       WHEN c.kind <> 'break_glass' AND c.ticket IS NOT NULL THEN c.ticket_problem
  END AS invalid_reason) v
;
-- The best candidate per segment: verdict rank, then the latest start, then the smallest id.
CREATE OR REPLACE TEMP TABLE best AS
SELECT key_id, p, sid, unnest(b)
FROM (
  SELECT key_id, p, sid,
         arg_min(struct_pack(verdict, approval_source, approval_id, ticket, invalid_reason, via),
                 struct_pack(r := rank, s := -epoch_us(ws), a := approval_id,
                             o := approval_source)) AS b
  FROM judged GROUP BY key_id, p, sid
)
;
-- For segments no window covers: the nearest window that ended before (largest end) and the
-- one that starts after (smallest start), found with ASOF joins. When several windows share
-- that end or start, the smallest approval id is named.
CREATE OR REPLACE TEMP TABLE win_end AS
SELECT key_id, we, we + to_seconds($grace) AS we_g,
       arg_min(struct_pack(src := approval_source, id := approval_id),
               struct_pack(a := approval_id, o := approval_source)) AS w
FROM win GROUP BY key_id, we
;
CREATE OR REPLACE TEMP TABLE win_start AS
SELECT key_id, ws, ws - to_seconds($grace) AS ws_g,
       arg_min(struct_pack(src := approval_source, id := approval_id),
               struct_pack(a := approval_id, o := approval_source)) AS w
FROM win GROUP BY key_id, ws
;
CREATE OR REPLACE TEMP TABLE nearest AS
SELECT s.sid, s.key_id, s.p,
       e.w.src AS prev_src, e.w.id AS prev_id, epoch_us(e.we) AS prev_us,
       n.w.src AS next_src, n.w.id AS next_id, epoch_us(n.ws) AS next_us
FROM (SELECT key_id, p, sid FROM seg_used ANTI JOIN best b USING (sid)) s
ASOF LEFT JOIN win_end e ON e.key_id = s.key_id AND s.p > e.we_g
ASOF LEFT JOIN win_start n ON n.key_id = s.key_id AND s.p < n.ws_g
;
