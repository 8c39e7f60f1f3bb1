-- approval_checks.sql: approvals used by run $run_id checked against their tickets (docs/tickets.md).
-- Statements are separated by lines holding only ';'.
CREATE OR REPLACE TEMP TABLE used_approvals AS
SELECT a.source, a.approval_id, a.requester, a.target, t.ticket_id, t.assignee, t.reporter,
       t.components, t.history_note, t.source AS ticket_source
-- The approvals the run's findings name (as the findings view names them, read from its two
-- tables: 1e7 actions share far fewer segments): a covered segment's window, and for
-- out_of_window actions the nearest window before (gap > 0) or after (gap < 0).
FROM (SELECT DISTINCT approval_source, approval_id FROM (
        SELECT approval_source, approval_id FROM run_segments
        WHERE run_id = $run_id AND verdict IS NOT NULL
        UNION ALL
        SELECT CASE WHEN r.after THEN s.prev_src ELSE s.next_src END,
               CASE WHEN r.after THEN s.prev_id ELSE s.next_id END
        FROM (SELECT DISTINCT sid, gap_seconds > 0 AS after FROM finding_refs
              WHERE run_id = $run_id AND gap_seconds IS NOT NULL) r
        JOIN run_segments s ON s.run_id = $run_id AND s.sid = r.sid)
      WHERE approval_id IS NOT NULL) u
JOIN approvals a ON a.source = u.approval_source AND a.approval_id = u.approval_id
JOIN tickets t ON t.ticket_id = a.ticket
;
-- The requester should be the ticket's assignee or reporter (aliases from identities.csv count).
-- Skipped for tickets from a source that gives no ticket a reporter (a CSV without that column):
-- the requester who filed the ticket is unknown there (said once: queries.SKIPPED_CHECKS_SQL).
INSERT INTO approval_checks (run_id, approval_source, approval_id, ticket_id, check_id, severity, detail)
SELECT $run_id, u.source, u.approval_id, u.ticket_id, 'requester_not_on_ticket', 'WARN',
       'requester ' || u.requester || ' is neither the assignee (' || coalesce(u.assignee, '-')
       || ') nor the reporter (' || coalesce(u.reporter, '-') || ') of ' || u.ticket_id
FROM used_approvals u
LEFT JOIN identities iq ON iq.alias_norm = lower(u.requester)
LEFT JOIN identities ia ON ia.alias_norm = lower(u.assignee)
LEFT JOIN identities ir ON ir.alias_norm = lower(u.reporter)
WHERE u.requester IS NOT NULL AND (u.assignee IS NOT NULL OR u.reporter IS NOT NULL)
  AND u.ticket_source IN (SELECT source FROM tickets WHERE reporter IS NOT NULL)
  AND coalesce(lower(iq.identity), lower(u.requester))
      IS DISTINCT FROM coalesce(lower(ia.identity), lower(u.assignee))
  AND coalesce(lower(iq.identity), lower(u.requester))
      IS DISTINCT FROM coalesce(lower(ir.identity), lower(u.reporter))
;
-- When the ticket names components / configuration items, one should cover the target
-- (equal, or either a glob of the other, case-insensitive).
INSERT INTO approval_checks (run_id, approval_source, approval_id, ticket_id, check_id, severity, detail)
SELECT $run_id, u.source, u.approval_id, u.ticket_id, 'ticket_does_not_cover_target', 'WARN',
       'target ' || u.target || ' is not among the components of ' || u.ticket_id || ': '
       || array_to_string(u.components, ', ')
FROM used_approvals u
WHERE len(u.components) > 0
  AND NOT list_bool_or(list_transform(u.components, lambda c:
        lower(c) = lower(u.target) OR lower(u.target) GLOB lower(c)
        OR lower(c) GLOB lower(u.target)))
;
-- A ticket judged by its current state only (its state history could not be read): never silent.
INSERT INTO approval_checks (run_id, approval_source, approval_id, ticket_id, check_id, severity, detail)
SELECT $run_id, u.source, u.approval_id, u.ticket_id, 'ticket_state_without_history', 'WARN',
       u.ticket_id || ': ' || u.history_note
FROM used_approvals u
WHERE u.history_note IS NOT NULL
;
DROP TABLE used_approvals
