-- hygiene.sql: findings about the approvals themselves for run $run_id (docs/hygiene.md).
-- Runs in the run's transaction after verdicts.sql and verdicts_store.sql and reads their
-- scratch: win (each approval's windows per (account, target) key, cited ones included; ref_keys
-- the keys of cited approvals) and cand (each used timeline segment, with the work done in it,
-- beside every window covering its start). Segments are cut at every window bound, so an action
-- lies in a window exactly when its segment starts inside it: what each approval covered is read
-- from the segments the verdicts judged, never from a second pass over 1e7 actions.
-- Thresholds are $hy_<name> (correlate/hygiene.py). Statements are separated by lines holding
-- only ';'.

-- The approvals judged: in force at some moment, starting in the period (so a weekly run judges
-- each approval once), with the identities (identities.csv) of account, requester and approver.
CREATE OR REPLACE TEMP TABLE hy_appr AS
SELECT a.source, a.approval_id, a.account, a.target, lower(a.target) AS tnorm,
       CASE WHEN len(a.targets) > 0 THEN a.targets ELSE [a.target] END AS tlist,
       a.start_ts AS ws, a.window_end AS we, a.ticket, a.requester, a.approver, a.kind,
       coalesce(lower(ia.identity), lower(a.account)) AS acct_ident,
       coalesce(lower(iq.identity), lower(a.requester)) AS req_ident,
       coalesce(lower(iv.identity), lower(a.approver)) AS appr_ident,
       iq.identity AS req_alias_of, iv.identity AS appr_alias_of,
       row_number() OVER (ORDER BY a.source, a.approval_id) AS aid     -- joins on integers
FROM approval_windows a
LEFT JOIN identities ia ON ia.alias_norm = lower(a.account)
LEFT JOIN identities iq ON iq.alias_norm = lower(a.requester)
LEFT JOIN identities iv ON iv.alias_norm = lower(a.approver)
WHERE a.status <> 'denied' AND a.window_end >= a.start_ts
  AND ($start IS NULL OR a.start_ts >= $start) AND ($end IS NULL OR a.start_ts < $end)
;
-- Work done under each approval: the verdict pass's candidates (cand: each used segment, with
-- the work done in it, and every window covering its start widened by grace) narrowed to the
-- window itself. n counts actions that are not failed attempts (a failed attempt is no work).
CREATE OR REPLACE TEMP TABLE hy_used AS
SELECT approval_source AS source, approval_id, sum(n)::BIGINT AS n, min(lo) AS lo, max(hi) AS hi
FROM cand WHERE p >= ws AND p <= we AND n > 0
GROUP BY approval_source, approval_id
;
-- self_approval (FAIL): the approver is the requester, by name or through identities.csv.
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', source, approval_id, ticket, account, target, 'self_approval', 'FAIL',
       'requested by ' || requester || ' and approved by ' || approver
       || CASE WHEN lower(requester) = lower(approver) THEN ''
               ELSE ' (one identity: ' || req_ident || ')' END,
       json_object('requester', requester, 'approver', approver, 'identity', req_ident,
                   'matched_by', CASE WHEN lower(requester) = lower(approver) THEN 'same name'
                        ELSE 'identities.csv: ' || concat_ws('; ',
                             CASE WHEN req_alias_of IS NOT NULL
                                  THEN 'alias ' || requester || ' of ' || req_alias_of END,
                             CASE WHEN appr_alias_of IS NOT NULL
                                  THEN 'alias ' || approver || ' of ' || appr_alias_of END) END
       )::VARCHAR
FROM hy_appr
WHERE requester IS NOT NULL AND approver IS NOT NULL AND req_ident = appr_ident
;
INSERT INTO hygiene_counts
SELECT $run_id, 'self_approval', count(*) FILTER (WHERE requester IS NOT NULL AND approver IS NOT NULL),
       count(*) FILTER (WHERE requester IS NULL OR approver IS NULL)
FROM hy_appr
;
-- approver_is_implementer (WARN): the approver's identity acted under the approval (as actor,
-- else as the account). Only actions of names that resolve to an approver are looked at.
CREATE OR REPLACE TEMP TABLE hy_names AS
SELECT ident, name, dense_rank() OVER (ORDER BY ident) AS iid FROM (
    SELECT DISTINCT appr_ident AS ident, appr_ident AS name FROM hy_appr WHERE approver IS NOT NULL
    UNION
    SELECT DISTINCT lower(i.identity), i.alias_norm FROM identities i
    WHERE lower(i.identity) IN (SELECT appr_ident FROM hy_appr WHERE approver IS NOT NULL))
;
-- Each window of an approval with an approver, with the approver's identity; then the actions
-- of those identities in them (an action citing an approval has that approval's key, as in
-- verdicts.sql), joined on (key, identity) and time: no pass over every action's segment.
CREATE OR REPLACE TEMP TABLE hy_wi AS
SELECT w.key_id, w.ws, w.we, ap.aid, n.iid
FROM win w JOIN hy_appr ap ON ap.source = w.approval_source AND ap.approval_id = w.approval_id
JOIN (SELECT DISTINCT ident, iid FROM hy_names) n ON n.ident = ap.appr_ident
WHERE ap.approver IS NOT NULL
;
CREATE OR REPLACE TEMP TABLE hy_impl AS
SELECT i.aid, i.n,
       struct_pack(who := coalesce(a.actor, a.account), event_id := a.event_id) AS first
FROM (
SELECT wi.aid, count(*) AS n,
       arg_min(x.act_id, struct_pack(t := x.ts, a := x.act_id)) AS act_id
FROM (SELECT coalesce(r.key_id, a.key_id) AS key_id, a.ts, n.iid, a.act_id
      FROM activity a
      JOIN hy_names n ON n.name = lower(coalesce(a.actor, a.account))
      LEFT JOIN ref_keys r ON r.approval_ref = a.approval_ref
      WHERE a.outcome IS DISTINCT FROM 'failure'
        AND ($start IS NULL OR a.ts >= $start) AND ($end IS NULL OR a.ts < $end)) x
JOIN hy_wi wi ON wi.key_id = x.key_id AND wi.iid = x.iid
             AND x.ts >= wi.ws AND x.ts <= wi.we
GROUP BY ALL) i
JOIN activity a ON a.act_id = i.act_id
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', ap.source, ap.approval_id, ap.ticket, ap.account, ap.target,
       'approver_is_implementer', 'WARN',
       'approver ' || ap.approver || ' did the work: ' || x.n || ' action(s) by ' || x.first.who
       || CASE WHEN lower(x.first.who) = lower(ap.approver) THEN ''
               ELSE ' (one identity: ' || ap.appr_ident || ')' END,
       json_object('approver', ap.approver, 'actor', x.first.who, 'identity', ap.appr_ident,
                   'matched_by', CASE WHEN lower(x.first.who) = lower(ap.approver)
                                      THEN 'same name' ELSE 'identities.csv' END,
                   'actions', x.n, 'first_event', x.first.event_id)::VARCHAR
FROM hy_impl x JOIN hy_appr ap USING (aid)
;
INSERT INTO hygiene_counts
SELECT $run_id, 'approver_is_implementer', count(*) FILTER (WHERE approver IS NOT NULL),
       count(*) FILTER (WHERE approver IS NULL)
FROM hy_appr
;
-- approver_not_authorized (WARN): approvers.csv lists who may approve which targets (a name, a
-- glob or a targets.csv group) and kinds; a ticket's approvers (ServiceNow) list who approved
-- the change. An approver on neither list that applies is a finding; with no list that applies
-- the approval is not judged.
CREATE OR REPLACE TEMP TABLE hy_approvers AS
SELECT coalesce(lower(i.identity), v.approver_norm) AS ident, v.scope_norm, v.kinds
FROM approvers v LEFT JOIN identities i ON i.alias_norm = v.approver_norm
;
CREATE OR REPLACE TEMP TABLE hy_auth AS
SELECT ap.source, ap.approval_id,
       (SELECT count(*) FROM hy_approvers) > 0 AS has_list,
       bool_and(t.ok) AS listed,
       list(t.tgt ORDER BY t.tgt) FILTER (WHERE NOT t.ok) AS unlisted,
       tk.n IS NOT NULL AS has_ticket_list, coalesce(tk.ok, false) AS on_ticket, tk.names
FROM hy_appr ap
LEFT JOIN (
    SELECT x.source, x.approval_id, x.tgt,
           EXISTS (SELECT 1 FROM hy_approvers v
                   WHERE v.ident = x.appr_ident
                     AND (v.kinds IS NULL OR len(v.kinds) = 0 OR list_contains(v.kinds, x.kind))
                     AND (lower(x.tgt) = v.scope_norm OR lower(x.tgt) GLOB v.scope_norm
                          OR v.scope_norm IN (SELECT lower(g.grp) FROM targets g
                                              WHERE g.name_norm = lower(x.tgt)
                                                AND g.grp IS NOT NULL))) AS ok
    FROM (SELECT source, approval_id, appr_ident, kind, unnest(tlist) AS tgt FROM hy_appr
          WHERE approver IS NOT NULL) x
) t ON t.source = ap.source AND t.approval_id = ap.approval_id
LEFT JOIN (
    SELECT ta.ticket_id, count(*) AS n,
           bool_or(coalesce(lower(i.identity), lower(ta.approver)) = p.appr_ident) AS ok,
           string_agg(DISTINCT ta.approver, ', ' ORDER BY ta.approver) AS names, p.appr_ident
    FROM ticket_approvals ta
    JOIN (SELECT DISTINCT ticket, appr_ident FROM hy_appr WHERE approver IS NOT NULL) p
      ON p.ticket = ta.ticket_id
    LEFT JOIN identities i ON i.alias_norm = lower(ta.approver)
    WHERE ta.approver IS NOT NULL
    GROUP BY ta.ticket_id, p.appr_ident
) tk ON tk.ticket_id = ap.ticket AND tk.appr_ident = ap.appr_ident
WHERE ap.approver IS NOT NULL
GROUP BY ap.source, ap.approval_id, tk.n, tk.ok, tk.names
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', ap.source, ap.approval_id, ap.ticket, ap.account, ap.target,
       'approver_not_authorized', 'WARN',
       concat_ws('; ',
         CASE WHEN u.has_list AND NOT u.listed THEN 'approver ' || ap.approver
              || ' is not listed in approvers.csv for ' || array_to_string(u.unlisted, ', ')
              || ' (' || ap.kind || ')' END,
         CASE WHEN u.has_ticket_list AND NOT u.on_ticket THEN 'approver ' || ap.approver
              || ' is not among the approvers of ' || ap.ticket || ' (' || u.names || ')' END),
       json_object('approver', ap.approver, 'identity', ap.appr_ident, 'kind', ap.kind,
                   'not_listed_for', CASE WHEN u.has_list AND NOT u.listed THEN u.unlisted END,
                   'ticket_approvers', CASE WHEN u.has_ticket_list THEN u.names END)::VARCHAR
FROM hy_auth u JOIN hy_appr ap USING (source, approval_id)
WHERE (u.has_list AND NOT u.listed) OR (u.has_ticket_list AND NOT u.on_ticket)
;
INSERT INTO hygiene_counts
SELECT $run_id, 'approver_not_authorized',
       (SELECT count(*) FROM hy_auth WHERE has_list OR has_ticket_list),
       (SELECT count(*) FROM hy_appr) - (SELECT count(*) FROM hy_auth WHERE has_list OR has_ticket_list)
;
-- Every host an approval's targets allow: a glob over every host name on record, a targets.csv
-- group's members, else the name itself. Each distinct pattern is expanded once.
CREATE OR REPLACE TEMP TABLE hy_pat AS
SELECT DISTINCT lower(unnest(tlist)) AS pat FROM hy_appr
;
CREATE OR REPLACE TEMP TABLE hy_expand AS
WITH hosts AS (SELECT DISTINCT target_norm AS host FROM activity_keys
               UNION SELECT name_norm FROM targets),
     groups AS (SELECT DISTINCT lower(grp) AS pat, name_norm AS host FROM targets
                WHERE grp IS NOT NULL)
SELECT p.pat, h.host, 'glob' AS how
FROM hy_pat p JOIN hosts h ON h.host GLOB p.pat
WHERE regexp_matches(p.pat, '[*?\[]')
UNION ALL
SELECT g.pat, g.host, 'group' FROM groups g WHERE g.pat IN (SELECT pat FROM hy_pat)
UNION ALL
SELECT pat, pat, 'name' FROM hy_pat
WHERE NOT regexp_matches(pat, '[*?\[]') AND pat NOT IN (SELECT pat FROM groups)
;
-- approval_unused (WARN) / approval_unused_unknown (INFO): the window ended by the end of the
-- period and no action of the account fell in it on a target it covers. "Unused" only when
-- every source that ever reported on an allowed host reported on it during the window; a host no
-- source reports on, or a quiet source, makes it unknown.
CREATE OR REPLACE TEMP TABLE hy_unused AS
SELECT ap.* FROM hy_appr ap
WHERE ap.we < coalesce($end, $now)
  AND NOT EXISTS (SELECT 1 FROM hy_used u WHERE u.source = ap.source
                  AND u.approval_id = ap.approval_id)
;
CREATE OR REPLACE TEMP TABLE hy_uhost AS
SELECT DISTINCT u.source, u.approval_id, u.ws, u.we, e.host
FROM (SELECT source, approval_id, ws, we, lower(unnest(tlist)) AS pat FROM hy_unused) u
JOIN hy_expand e USING (pat)
;
-- Each source's events per host and hour (first and last), for the hosts above only. The hour
-- is the UTC hour (the store's session is UTC) floored in integer microseconds: date_trunc on a
-- TIMESTAMPTZ goes through the time zone library, 0.3 CPU-s over 3e6 actions at 1e7.
CREATE OR REPLACE TEMP TABLE hy_beat AS
SELECT a.source, k.target_norm AS host,
       make_timestamptz(epoch_us(a.ts) - (epoch_us(a.ts) % 3600000000 + 3600000000) % 3600000000)
           AS hour,
       min(a.ts) AS lo, max(a.ts) AS hi
FROM activity a
JOIN (SELECT key_id, target_norm FROM activity_keys
      WHERE target_norm IN (SELECT host FROM hy_uhost)) k ON k.key_id = a.key_id
GROUP BY ALL
;
-- (approval, host, source): reported when an hour's first or last event lies in the window
-- (an hour whose events straddle the window without one in it counts as quiet: unknown, never
-- a false "unused").
CREATE OR REPLACE TEMP TABLE hy_reported AS
SELECT u.source, u.approval_id, u.host, m.src,
       EXISTS (SELECT 1 FROM hy_beat b
               WHERE b.source = m.src AND b.host = u.host
                 AND b.hour >= date_trunc('hour', u.ws) AND b.hour <= u.we
                 AND ((b.lo >= u.ws AND b.lo <= u.we) OR (b.hi >= u.ws AND b.hi <= u.we)))
         AS reported
FROM hy_uhost u
JOIN (SELECT DISTINCT source AS src, host FROM hy_beat) m ON m.host = u.host
;
CREATE OR REPLACE TEMP TABLE hy_unused_judged AS
SELECT u.*, coalesce(r.pairs, 0) AS pairs, coalesce(r.quiet, []) AS quiet,
       coalesce(r.sources, []) AS sources, coalesce(h.hosts, 0) AS hosts,
       coalesce(r.pairs, 0) > 0 AND len(coalesce(r.quiet, [])) = 0 AS known
FROM hy_unused u
LEFT JOIN (SELECT source, approval_id, count(*) AS pairs,
                  list(host || ' (' || src || ')' ORDER BY host, src) FILTER (WHERE NOT reported)
                      AS quiet,
                  list(DISTINCT src ORDER BY src) AS sources
           FROM hy_reported GROUP BY ALL) r USING (source, approval_id)
LEFT JOIN (SELECT source, approval_id, count(DISTINCT host) AS hosts FROM hy_uhost GROUP BY ALL) h
  USING (source, approval_id)
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', source, approval_id, ticket, account, target,
       CASE WHEN known THEN 'approval_unused' ELSE 'approval_unused_unknown' END,
       CASE WHEN known THEN 'WARN' ELSE 'INFO' END,
       CASE WHEN known
            THEN 'no action by ' || account || ' on ' || target || ' in the '
                 || round(epoch(we - ws) / 60)::BIGINT || ' min granted, while '
                 || array_to_string(sources, ', ') || ' reported'
            WHEN pairs = 0
            THEN 'no action by ' || account || ' on ' || target || ', but no source reports on '
                 || 'its host(s): unused or unseen'
            ELSE 'no action by ' || account || ' on ' || target || ', but a source was quiet '
                 || 'during the window: ' || array_to_string(quiet[1:5], ', ')
                 || CASE WHEN len(quiet) > 5 THEN ', ...' ELSE '' END END,
       json_object('granted_minutes', round(epoch(we - ws) / 60, 1), 'used_minutes', 0,
                   'start', strftime(ws, '%Y-%m-%dT%H:%M:%SZ'),
                   'end', strftime(we, '%Y-%m-%dT%H:%M:%SZ'), 'allowed_hosts', hosts,
                   'sources_reporting', sources, 'quiet', quiet[1:20])::VARCHAR
FROM hy_unused_judged
;
INSERT INTO hygiene_counts
SELECT $run_id, c, (SELECT count(*) FROM hy_appr WHERE we < coalesce($end, $now)),
       (SELECT count(*) FROM hy_appr WHERE we >= coalesce($end, $now))
FROM (VALUES ('approval_unused'), ('approval_unused_unknown')) v(c)
;
-- standing_eligibility (WARN): $hy_unused_runs or more unused approvals (approval_unused, not
-- unknown) for one (account identity, target) in the period: eligibility nobody needs.
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', last.source, last.approval_id, NULL, last.account, last.target,
       'standing_eligibility', 'WARN',
       n || ' unused approvals for ' || last.account || ' on ' || last.target
       || ' in the period (threshold ' || $hy_unused_runs || ')',
       json_object('identity', acct_ident, 'unused', n, 'approvals', ids[1:50])::VARCHAR
FROM (SELECT acct_ident, tnorm, count(*) AS n,
             arg_max(struct_pack(source := source, approval_id := approval_id, account := account,
                                 target := target), struct_pack(w := ws, a := approval_id)) AS last,
             list(approval_id ORDER BY ws, approval_id) AS ids
      FROM hy_unused_judged WHERE known GROUP BY acct_ident, tnorm)
WHERE n >= greatest($hy_unused_runs, 1)
;
INSERT INTO hygiene_counts
SELECT $run_id, 'standing_eligibility', count(DISTINCT (acct_ident, tnorm)), 0 FROM hy_appr
;
-- window_oversized (INFO): a window of $hy_min_window hours or more whose actions (first to
-- last) span less than $hy_used_fraction of it.
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', ap.source, ap.approval_id, ap.ticket, ap.account, ap.target,
       'window_oversized', 'INFO',
       'used ' || round((u.hi - u.lo) / 60e6)::BIGINT || ' of ' || round(epoch(ap.we - ap.ws) / 60)::BIGINT
       || ' min granted (' || u.n || ' action(s))',
       json_object('granted_minutes', round(epoch(ap.we - ap.ws) / 60, 1),
                   'used_minutes', round((u.hi - u.lo) / 60e6, 1), 'actions', u.n,
                   'first', strftime(make_timestamptz(u.lo), '%Y-%m-%dT%H:%M:%SZ'),
                   'last', strftime(make_timestamptz(u.hi), '%Y-%m-%dT%H:%M:%SZ'))::VARCHAR
FROM hy_appr ap JOIN hy_used u USING (source, approval_id)
WHERE epoch(ap.we - ap.ws) >= $hy_min_window * 3600
  AND (u.hi - u.lo) / 1e6 < $hy_used_fraction * epoch(ap.we - ap.ws)
;
INSERT INTO hygiene_counts
SELECT $run_id, 'window_oversized', count(*), 0 FROM hy_used
;
-- renewal_chain (WARN): approvals of one (account identity, target) back to back (each starting
-- at most $hy_chain_gap minutes after the chain so far ends) spanning more than $hy_max_chain
-- hours; or more than $hy_max_per_week of them starting within 7 days. The two window passes
-- carry only the columns the chains are read by (with all of hy_appr's: 0.25 against 0.14
-- CPU-s at 1e7).
CREATE OR REPLACE TEMP TABLE hy_chain AS
SELECT *, sum(CASE WHEN prev_end IS NULL OR ws > prev_end + to_seconds($hy_chain_gap * 60)
                   THEN 1 ELSE 0 END)
              OVER (PARTITION BY acct_ident, tnorm ORDER BY ws, approval_id, source
                    ROWS UNBOUNDED PRECEDING) AS chain
FROM (SELECT *, max(we) OVER (PARTITION BY acct_ident, tnorm ORDER BY ws, approval_id, source
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
      FROM (SELECT source, approval_id, account, target, acct_ident, tnorm, ws, we FROM hy_appr))
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', first.source, first.approval_id, NULL, first.account, first.target,
       'renewal_chain', 'WARN',
       n || ' approvals back to back for ' || first.account || ' on ' || first.target || ': '
       || round(epoch(hi - lo) / 3600, 1) || ' h in a row (threshold ' || $hy_max_chain || ' h)',
       json_object('approvals', ids[1:50], 'chained', n,
                   'start', strftime(lo, '%Y-%m-%dT%H:%M:%SZ'),
                   'end', strftime(hi, '%Y-%m-%dT%H:%M:%SZ'),
                   'granted_minutes', round(epoch(hi - lo) / 60, 1))::VARCHAR
FROM (SELECT acct_ident, tnorm, chain, count(*) AS n, min(ws) AS lo, max(we) AS hi,
             arg_min(struct_pack(source := source, approval_id := approval_id, account := account,
                                 target := target), struct_pack(w := ws, a := approval_id)) AS first,
             list(approval_id ORDER BY ws, approval_id) AS ids
      FROM hy_chain GROUP BY ALL)
WHERE n >= 2 AND epoch(hi - lo) > $hy_max_chain * 3600
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', top.source, top.approval_id, NULL, top.account, top.target,
       'renewal_chain', 'WARN',
       top.n || ' approvals for ' || top.account || ' on ' || top.target
       || ' within 7 days from ' || strftime(top.ws, '%Y-%m-%d %H:%M') || ' (threshold '
       || $hy_max_per_week || ')',
       json_object('approvals_in_7_days', top.n, 'from', strftime(top.ws, '%Y-%m-%dT%H:%M:%SZ'),
                   'first_approval', top.approval_id)::VARCHAR
FROM (SELECT acct_ident, tnorm,
             arg_max(struct_pack(source := source, approval_id := approval_id, account := account,
                                 target := target, n := n, ws := ws),
                     struct_pack(n := n, w := -epoch_us(ws))) AS top
      FROM (SELECT *, count(*) OVER (PARTITION BY acct_ident, tnorm ORDER BY ws
                                    RANGE BETWEEN CURRENT ROW AND INTERVAL 7 DAYS FOLLOWING) AS n
            FROM hy_appr)
      GROUP BY ALL)
WHERE top.n > $hy_max_per_week
;
INSERT INTO hygiene_counts
SELECT $run_id, 'renewal_chain', count(*), 0 FROM hy_appr
;
-- ticket_reused (WARN): one ticket cited by approvals (any on record, not denied) spanning more
-- than $hy_ticket_span days; or an approval starting after its ticket closed.
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', x.last.source, x.last.approval_id, x.ticket, x.last.account,
       x.last.target, 'ticket_reused', 'WARN',
       x.ticket || ' cited by ' || x.n || ' approvals over ' || round(epoch(x.hi - x.lo) / 86400, 1)
       || ' days (threshold ' || $hy_ticket_span || ' days)',
       json_object('ticket', x.ticket, 'approvals', x.n, 'ids', x.ids[1:50],
                   'first_start', strftime(x.lo, '%Y-%m-%dT%H:%M:%SZ'),
                   'last_end', strftime(x.hi, '%Y-%m-%dT%H:%M:%SZ'))::VARCHAR
FROM (SELECT a.ticket, count(*) AS n, min(a.start_ts) AS lo, max(a.window_end) AS hi,
             list(a.approval_id ORDER BY a.start_ts, a.approval_id) AS ids,
             arg_max(struct_pack(source := a.source, approval_id := a.approval_id,
                                 account := a.account, target := a.target),
                     struct_pack(w := a.start_ts, i := a.approval_id)) AS last
      FROM approval_windows a
      WHERE a.status <> 'denied' AND a.ticket IN (SELECT ticket FROM hy_appr)
      GROUP BY a.ticket) x
WHERE epoch(x.hi - x.lo) > $hy_ticket_span * 86400
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', ap.source, ap.approval_id, ap.ticket, ap.account, ap.target,
       'ticket_reused', 'WARN',
       'starts ' || strftime(ap.ws, '%Y-%m-%d %H:%M') || ', after ' || ap.ticket || ' closed ('
       || strftime(t.closed, '%Y-%m-%d %H:%M') || ')',
       json_object('ticket', ap.ticket, 'closed', strftime(t.closed, '%Y-%m-%dT%H:%M:%SZ'),
                   'start', strftime(ap.ws, '%Y-%m-%dT%H:%M:%SZ'))::VARCHAR
FROM hy_appr ap JOIN tickets t ON t.ticket_id = ap.ticket
WHERE t.closed IS NOT NULL AND ap.ws > t.closed
;
INSERT INTO hygiene_counts
SELECT $run_id, 'ticket_reused', count(*) FILTER (WHERE ticket IS NOT NULL), 0 FROM hy_appr
;
-- break_glass_routine (WARN): more than $hy_bg_per_30d break-glass approvals of one account
-- identity within 30 days (counting those on record before the period); or a break-glass
-- approval while a standard one of the same account for the same target (or a glob matching it)
-- was in force.
CREATE OR REPLACE TEMP TABLE hy_bg AS
SELECT a.source, a.approval_id, a.account, a.target, lower(a.target) AS tnorm, a.start_ts AS ws,
       a.window_end AS we, a.kind, a.ticket,
       coalesce(lower(i.identity), lower(a.account)) AS acct_ident
FROM approval_windows a LEFT JOIN identities i ON i.alias_norm = lower(a.account)
WHERE a.status <> 'denied' AND a.window_end >= a.start_ts
  AND a.kind = 'break_glass'
  AND a.start_ts > (SELECT min(ws) FROM hy_appr) - INTERVAL 30 DAYS
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', b.source, b.approval_id, b.ticket, b.account, b.target,
       'break_glass_routine', 'WARN',
       b.n || ' break-glass approvals for ' || b.account || ' within 30 days up to '
       || strftime(b.ws, '%Y-%m-%d %H:%M') || ' (threshold ' || $hy_bg_per_30d || ')',
       json_object('identity', b.acct_ident, 'break_glass_in_30_days', b.n,
                   'approvals', b.ids[1:50])::VARCHAR
FROM (SELECT *, count(*) OVER w AS n, list(approval_id) OVER w AS ids
      FROM hy_bg
      WINDOW w AS (PARTITION BY acct_ident ORDER BY ws
                   RANGE BETWEEN INTERVAL 30 DAYS PRECEDING AND CURRENT ROW)) b
JOIN hy_appr ap ON ap.source = b.source AND ap.approval_id = b.approval_id
WHERE b.n > $hy_bg_per_30d
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', ap.source, ap.approval_id, ap.ticket, ap.account, ap.target,
       'break_glass_routine', 'WARN',
       'break-glass at ' || strftime(ap.ws, '%Y-%m-%d %H:%M') || ' while standard approval '
       || x.std.approval_id || ' for the same target was in force',
       json_object('standard_approval', x.std.approval_id,
                   'standard_start', strftime(x.std.ws, '%Y-%m-%dT%H:%M:%SZ'),
                   'standard_end', strftime(x.std.we, '%Y-%m-%dT%H:%M:%SZ'))::VARCHAR
FROM (SELECT b.source, b.approval_id,
             arg_max(struct_pack(approval_id := s.approval_id, ws := s.ws, we := s.we),
                     struct_pack(w := s.ws, a := s.approval_id)) AS std
      FROM (SELECT source, approval_id, acct_ident, tnorm, ws FROM hy_appr
            WHERE kind = 'break_glass') b
      JOIN (SELECT a.approval_id, lower(a.target) AS tnorm, a.start_ts AS ws, a.window_end AS we,
                   coalesce(lower(i.identity), lower(a.account)) AS acct_ident
            FROM approval_windows a LEFT JOIN identities i ON i.alias_norm = lower(a.account)
            WHERE a.kind <> 'break_glass' AND a.status <> 'denied') s
        ON s.acct_ident = b.acct_ident AND s.ws <= b.ws AND s.we >= b.ws
       AND (s.tnorm = b.tnorm OR b.tnorm GLOB s.tnorm)
      GROUP BY b.source, b.approval_id) x
JOIN hy_appr ap USING (source, approval_id)
;
INSERT INTO hygiene_counts
SELECT $run_id, 'break_glass_routine', count(*) FILTER (WHERE kind = 'break_glass'), 0 FROM hy_appr
;
-- scope_wider_than_use (INFO): a glob or group allowing $hy_scope_min_hosts hosts or more of
-- which the actions touched at most $hy_scope_used_fraction; the detail names the touched hosts
-- and a narrower pattern (their common prefix and *, or the one host).
CREATE OR REPLACE TEMP TABLE hy_patn AS
SELECT pat, count(DISTINCT host) AS hosts, bool_or(how <> 'name') AS wide
FROM hy_expand GROUP BY pat
;
-- Hosts each approval allows, for those with a glob or group among their targets: one target's
-- count per pattern, several targets' by their union.
CREATE OR REPLACE TEMP TABLE hy_scope AS
SELECT ap.source, ap.approval_id, p.hosts AS allowed, true AS wide
FROM hy_appr ap JOIN hy_patn p ON p.pat = lower(ap.tlist[1])
WHERE len(ap.tlist) = 1 AND p.wide
UNION ALL
SELECT x.source, x.approval_id, count(DISTINCT e.host), true
FROM (SELECT source, approval_id, lower(unnest(tlist)) AS pat FROM hy_appr
      WHERE len(tlist) > 1) x
JOIN hy_expand e USING (pat)
GROUP BY ALL HAVING bool_or(e.how <> 'name')
;
-- Hosts the work touched, for the approvals that may qualify: counted first (by the host name's
-- hash, which can only undercount), listed only where the count is small enough.
CREATE OR REPLACE TEMP TABLE hy_touched AS
SELECT u.source, u.approval_id, list(DISTINCT k.target_norm ORDER BY k.target_norm) AS hosts
FROM (SELECT approval_source AS source, approval_id, key_id FROM cand
      WHERE p >= ws AND p <= we AND n > 0) u
JOIN (SELECT c.approval_source AS source, c.approval_id
      FROM cand c
      JOIN hy_scope s ON s.source = c.approval_source AND s.approval_id = c.approval_id
                     AND s.allowed >= $hy_scope_min_hosts
      JOIN key_ident k ON k.key_id = c.key_id
      WHERE c.p >= c.ws AND c.p <= c.we AND c.n > 0
      GROUP BY c.approval_source, c.approval_id, s.allowed
      HAVING count(DISTINCT hash(k.target_norm)) <= $hy_scope_used_fraction * s.allowed) s
  USING (source, approval_id)
JOIN activity_keys k ON k.key_id = u.key_id
GROUP BY ALL
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', ap.source, ap.approval_id, ap.ticket, ap.account, ap.target,
       'scope_wider_than_use', 'INFO',
       ap.target || ' allows ' || s.allowed || ' hosts; ' || len(t.hosts) || ' touched ('
       || array_to_string(t.hosts[1:10], ', ') || CASE WHEN len(t.hosts) > 10 THEN ', ...' ELSE '' END
       || '); narrower: ' || sugg,
       json_object('allowed_hosts', s.allowed, 'touched_hosts', len(t.hosts),
                   'touched', t.hosts[1:50], 'suggested', sugg)::VARCHAR
FROM hy_scope s JOIN hy_touched t USING (source, approval_id)
JOIN hy_appr ap USING (source, approval_id),
LATERAL (SELECT CASE
    WHEN len(t.hosts) = 1 THEN t.hosts[1]
    WHEN len(lcp) > 0 THEN lcp || '*'
    ELSE array_to_string(t.hosts, ',') END AS sugg
  FROM (SELECT list_reduce(t.hosts, lambda a, b: a[1:coalesce(list_position(list_transform(
            range(1, least(len(a), len(b)) + 2), lambda k: a[k:k] = b[k:k]), false),
            len(a) + 1) - 1]) AS lcp))
WHERE s.wide AND s.allowed >= $hy_scope_min_hosts
  AND len(t.hosts) <= $hy_scope_used_fraction * s.allowed
;
INSERT INTO hygiene_counts
SELECT $run_id, 'scope_wider_than_use', count(*) FILTER (WHERE wide), 0 FROM hy_scope
;
-- approval_bypass (FAIL): privilege granted outside the approval process. Actions of the
-- period: Entra "Add member to role outside of PIM" (connectors/pim.py), and CloudTrail
-- CreateAccountAssignment / AttachRolePolicy / PutRolePolicy by a human (not a service or bot)
-- that no approval window covers; approvals: a Teleport request approved by an update
-- (`tctl request approve`) with no access_request.review event on record.
CREATE OR REPLACE TEMP TABLE hy_bypass_act AS
SELECT a.act_id, a.event_id, a.source, a.ts, a.account, a.target, a.action, a.actor,
       coalesce(i.kind, a.actor_kind) AS who_kind
FROM activity a LEFT JOIN identities i ON i.alias_norm = lower(coalesce(a.actor, a.account))
WHERE (a.action = 'pim.add_member_outside_pim'
       OR a.action IN ('sso.amazonaws.com:CreateAccountAssignment',
                       'iam.amazonaws.com:AttachRolePolicy', 'iam.amazonaws.com:PutRolePolicy'))
  AND a.outcome IS DISTINCT FROM 'failure'
  AND ($start IS NULL OR a.ts >= $start) AND ($end IS NULL OR a.ts < $end)
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, act_id, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', NULL, NULL, NULL, b.account, b.target, b.act_id, 'approval_bypass',
       'FAIL',
       CASE WHEN b.action = 'pim.add_member_outside_pim'
            THEN 'role assigned outside of PIM by ' || coalesce(b.actor, '?') || ' to '
                 || b.account || ' at ' || strftime(b.ts, '%Y-%m-%d %H:%M')
            ELSE split_part(b.action, ':', 2) || ' by ' || coalesce(b.actor, b.account)
                 || ' on ' || b.target || ' at ' || strftime(b.ts, '%Y-%m-%d %H:%M')
                 || ' outside any approval' END,
       json_object('event_id', b.event_id, 'source', b.source, 'action', b.action,
                   'actor', b.actor, 'account', b.account,
                   'ts', strftime(b.ts, '%Y-%m-%dT%H:%M:%SZ'))::VARCHAR
FROM hy_bypass_act b
JOIN finding_refs r ON r.run_id = $run_id AND r.act_id = b.act_id
LEFT JOIN run_segments s ON s.run_id = $run_id AND s.sid = r.sid
WHERE b.action = 'pim.add_member_outside_pim'
   OR (coalesce(b.who_kind, 'human') NOT IN ('service', 'bot') AND s.verdict IS NULL)
;
INSERT INTO approval_checks (run_id, family, approval_source, approval_id, ticket_id, account,
                             target, check_id, severity, detail, evidence)
SELECT $run_id, 'hygiene', ap.source, ap.approval_id, ap.ticket, ap.account, ap.target,
       'approval_bypass', 'FAIL',
       'access request approved by ' || coalesce(ap.approver, '?')
       || ' with an update (tctl request approve) and no review on record',
       json_object('approver', ap.approver, 'requester', ap.requester,
                   'approved', strftime(e.approved, '%Y-%m-%dT%H:%M:%SZ'))::VARCHAR
FROM hy_appr ap
JOIN (SELECT source, approval_id,
             min(ts) FILTER (WHERE event = 'access_request.update'
                             AND fields->>'state' = 'APPROVED') AS approved
      FROM approval_events WHERE source = 'teleport'
      GROUP BY ALL
      HAVING bool_or(event = 'access_request.update' AND fields->>'state' = 'APPROVED')
         AND NOT bool_or(event = 'access_request.review')) e
  ON e.source = ap.source AND e.approval_id = ap.approval_id
;
INSERT INTO hygiene_counts
SELECT $run_id, 'approval_bypass',
       (SELECT count(*) FROM hy_bypass_act) + (SELECT count(*) FROM hy_appr WHERE source = 'teleport'),
       0
