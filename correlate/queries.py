"""Read-side queries over findings and ingest bookkeeping (bound parameters only)."""

from __future__ import annotations

from datetime import timezone

from correlate import run_groups
from correlate.detect.rules import SEVERITIES
from correlate.errors import PamcorrError
from correlate.exceptions import CRITICALITY
from correlate.findings import VERDICTS, Finding
from correlate.hygiene import CHECKS, NOT_JUDGED
from correlate.store import Store


def issue_key_sql(account: str, target: str, verdict: str, rule_id: str | None = None) -> str:
    """SQL of correlate.findings.issue_key over these column expressions."""
    parts = [account, target, f"coalesce({verdict}, '')"] + ([rule_id] if rule_id else [])
    return f"'iss-' || substr(sha256(concat_ws(chr(31), {', '.join(parts)})), 1, 12)"


# identity_kind: identities.csv's kind for the account, else what the connector saw
# (Teleport bots, CloudTrail service principals), else NULL (unknown). exception: the name of
# the accepted exception that covers the finding (docs/verdicts.md), else NULL.
FINDINGS_SQL = """
SELECT a.event_id, a.source, a.ts, a.account, a.target, a.action, a.detail, a.session_id,
       a.actor, f.verdict, f.status, f.approval_id, f.ticket_id, f.gap_seconds, f.reason, f.run_id,
       f.match_via, coalesce(i.kind, a.actor_kind) AS identity_kind, f.outcome,
       x.name AS exception,
       """ + issue_key_sql("a.account", "a.target", "f.verdict") + """ AS issue_key
FROM findings f JOIN activity a USING (act_id)
LEFT JOIN identities i ON i.alias_norm = lower(a.account)
LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id
LEFT JOIN verdict_exceptions x ON x.run_id = e.run_id AND x.n = e.n
WHERE f.run_id = $run_id
  AND ($verdict IS NULL OR f.verdict = $verdict)
  AND ($status IS NULL OR list_contains($status::VARCHAR[], f.status))
  AND ($kind IS NULL OR coalesce(i.kind, a.actor_kind, 'unknown') = $kind
       OR ($kind = 'non-human' AND coalesce(i.kind, a.actor_kind) IN ('service', 'bot')))
  AND ($account IS NULL OR lower(a.account) = lower($account) OR lower(a.actor) = lower($account))
  AND ($start IS NULL OR a.ts >= $start) AND ($end IS NULL OR a.ts < $end)
ORDER BY a.ts, a.source, a.event_id
LIMIT $limit
"""

# excepted: findings of the verdict an accepted exception covers (counted in n too).
VERDICT_TOTALS_SQL = """
SELECT f.verdict, f.status, count(*) AS n, count(e.act_id) AS excepted
FROM findings f LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id
WHERE f.run_id = ? GROUP BY ALL ORDER BY n DESC, f.verdict
"""
# The same rows from the run's groups (schema 066), written with the run: 1e7 findings are
# ~0.5 M groups, so `pamcorr correlate`, `run` and `export` do not count the findings again.
VERDICT_TOTALS_GROUPS_SQL = """
SELECT verdict, status, sum(n)::BIGINT AS n,
       coalesce(sum(n) FILTER (WHERE entry IS NOT NULL), 0)::BIGINT AS excepted
FROM run_groups WHERE run_id = ? GROUP BY ALL ORDER BY n DESC, verdict
"""

SOURCES_SQL = """
SELECT source, kind, count(*) AS files, sum(read) AS read, sum(accepted) AS accepted,
       sum(coalesce(ignored, 0)) AS ignored, sum(quarantined) AS quarantined,
       sum(duplicates) AS duplicates
FROM ingest_log WHERE finished IS NOT NULL GROUP BY ALL ORDER BY source, kind
"""

RUN_SQL = "SELECT * FROM runs WHERE run_id = ?"

# Failed attempts (verdict attempt_failed) per account and source: read from the run's action
# rows directly, where the outcome is stored (schema 023), not through the findings view.
FAILED_ATTEMPTS_SQL = """
SELECT a.account, a.source, count(*) AS n
FROM finding_refs r JOIN activity a USING (act_id)
WHERE r.run_id = ? AND r.outcome = 'failure'
GROUP BY ALL ORDER BY n DESC, a.account, a.source
"""


def latest_run(store: Store) -> int | None:
    """The newest finished run, or None."""
    return store.scalar("SELECT max(run_id) FROM runs WHERE finished IS NOT NULL")


def resolve_run(store: Store, run_id: int | None = None) -> int:
    """The given run, or the latest finished one; a clear error when there is none."""
    if run_id is None:
        run_id = latest_run(store)
        if run_id is None:
            raise PamcorrError("no correlation run yet; run `pamcorr correlate` first")
    elif not store.query("SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
        raise PamcorrError(f"no run {run_id}")
    return run_id


def statuses(status) -> list[str] | None:
    """A status filter as the findings query takes it: None (all), or a list (one or several)."""
    if not status:
        return None
    return [status] if isinstance(status, str) else list(status)


def findings(store: Store, run_id: int | None = None, verdict: str | None = None,
             status: str | list[str] | None = None, account: str | None = None,
             limit: int | None = None, kind: str | None = None, start=None,
             end=None) -> list[Finding]:
    """Findings of a run joined to their activity, oldest first; start <= ts < end when given.

    `kind`: human, service, bot, non-human (service or bot) or unknown. Each names the accepted
    exception that covers it (None: none does).
    """
    run_id = resolve_run(store, run_id)
    rows = store.query_dicts(FINDINGS_SQL, {"run_id": run_id, "verdict": verdict,
                                            "status": statuses(status), "account": account,
                                            "kind": kind,
                                            "start": start, "end": end,
                                            "limit": limit if limit is not None else 2**62})
    return [Finding(**r) for r in rows]


# Ticket sources that give no ticket a reporter: requester_not_on_ticket is skipped for their
# tickets (correlate/sql/approval_checks.sql).
SKIPPED_CHECKS_SQL = """
SELECT source FROM tickets GROUP BY source HAVING count(reporter) = 0 ORDER BY source
"""


def skipped_checks(store: Store) -> list[str]:
    """One line per ticket check skipped for want of a field (said once per run)."""
    return [f"requester_not_on_ticket skipped: the {source} tickets carry no reporter"
            for (source,) in store.query(SKIPPED_CHECKS_SQL)]


def verdict_totals(store: Store, run_id: int) -> list[dict]:
    """[{verdict, status, n, excepted}], most findings first: from the run's groups when they
    were written with it, else counted over its findings."""
    grouped = run_groups.written(store, run_id)
    return store.query_dicts(VERDICT_TOTALS_GROUPS_SQL if grouped else VERDICT_TOTALS_SQL,
                             [run_id])


def counted_statuses(totals: list[dict]) -> set[str]:
    """Statuses that count for --fail-on: those held by a finding no accepted exception covers."""
    return {t["status"] for t in totals if t["n"] - t.get("excepted", 0) > 0}


def failed_attempts(store: Store, run_id: int) -> list[dict]:
    """A run's failed attempts, counted per account and source (most first)."""
    return store.query_dicts(FAILED_ATTEMPTS_SQL, [run_id])


def source_counts(store: Store) -> list[dict]:
    return store.query_dicts(SOURCES_SQL)


def run_info(store: Store, run_id: int) -> dict:
    rows = store.query_dicts(RUN_SQL, [run_id])
    return rows[0]


def pending_approvals(store: Store, source: str) -> list[dict]:
    """A source's approvals kept but not in force: an event is missing (approvals_pending)."""
    return store.query_dicts("SELECT approval_id, status, reason FROM approvals_pending "
                             "WHERE source = ? ORDER BY approval_id", [source])


def check_count(store: Store, run_id: int) -> int:
    """How many ticket-check warnings a run raised."""
    return store.scalar("SELECT count(*) FROM approval_checks WHERE run_id = ? "
                        "AND family = 'ticket'", [run_id])


def tickets_without_history(store: Store, run_id: int) -> list[str]:
    """Tickets a run judged by their current state only (their state history could not be read)."""
    return [t for (t,) in store.query(
        "SELECT DISTINCT ticket_id FROM approval_checks WHERE run_id = ? "
        "AND check_id = 'ticket_state_without_history' ORDER BY 1", [run_id])]


# Detections of a run by severity and review (correlate/detect): the correlate summary and
# --fail-on read these; reports/detections.py lists the rows themselves.
DETECTION_TOTALS_SQL = """
SELECT r.severity, d.review, count(*) AS n
FROM detections d JOIN detection_rules r ON r.run_id = d.run_id AND r.rule_id = d.rule_id
WHERE d.run_id = ? GROUP BY r.severity, d.review
ORDER BY list_position(?, r.severity) DESC, d.review
"""

FAIL_ON_STATUS = {"fail": {"FAIL"}, "warn": {"FAIL", "WARN"}}
# What --fail-on takes: a finding status, or a detection severity (that severity or worse).
FAIL_ON_CHOICES = ("fail", "warn", *SEVERITIES)


def detection_totals(store: Store, run_id: int) -> list[dict]:
    """[{severity, review, n}] of a run's detections, most severe first."""
    return store.query_dicts(DETECTION_TOTALS_SQL, [run_id, list(SEVERITIES)])


def fails(fail_on, statuses: set[str], detections: list[dict]) -> list[str]:
    """Which --fail-on levels are met (empty: none). A status level is met by a finding (or
    coverage finding) of that status or worse; a severity level by a detection of that severity
    or worse that no allow entry muted."""
    met = []
    for level in fail_on or ():
        if level in FAIL_ON_STATUS:
            if statuses & FAIL_ON_STATUS[level]:
                met.append(level)
        elif any(d["n"] and d["review"] != "MUTED"
                 and SEVERITIES.index(d["severity"]) >= SEVERITIES.index(level)
                 for d in detections):
            met.append(level)
    return met


# The gap report's issues: one row per (account, target, verdict) that FAILs or WARNs, and
# whether an accepted exception covers it (`exception`: its name; an exception's globs read only
# the key, so a group is excepted whole or not at all). Sorted by the target's criticality (the
# most specific [criticality] glob; none sorts last), then verdict severity ($severity: worst
# first), then count. The sample command is the first one, the approval and ticket the ones
# nearest in time (smallest gap). `new`: the key had no FAIL/WARN finding in run $previous.
ISSUE_GROUPS_SQL = """
WITH prev AS (
    SELECT DISTINCT a.account, a.target, f.verdict
    FROM findings f JOIN activity a USING (act_id)
    WHERE f.run_id = $previous AND f.status IN ('FAIL', 'WARN')
), groups AS (
    SELECT a.account, a.target, f.verdict, f.status, e.n AS entry, count(*) AS n,
           min(a.ts) AS first, max(a.ts) AS last,
           arg_min(a.act_id, a.ts) AS sample_id,     -- its text below: no string per action
           arg_min({'approval_id': f.approval_id, 'via': f.match_via, 'gap': f.gap_seconds},
                   abs(coalesce(f.gap_seconds, 0))) FILTER (WHERE f.approval_id IS NOT NULL)
               AS approval,
           arg_min(f.ticket_id, abs(coalesce(f.gap_seconds, 0)))
               FILTER (WHERE f.ticket_id IS NOT NULL) AS ticket_id,
           arg_min(f.reason, a.ts) FILTER (WHERE f.reason IS NOT NULL) AS reason,
           $previous IS NOT NULL AND (a.account, a.target, f.verdict) NOT IN (
               SELECT (account, target, verdict) FROM prev) AS new
    FROM findings f JOIN activity a USING (act_id)
    LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id
    WHERE f.run_id = $run_id AND f.status IN ('FAIL', 'WARN')
    GROUP BY a.account, a.target, f.verdict, f.status, e.n
), ranked AS (
    -- The $limit first groups of each verdict, so that every FAIL and WARN verdict is listed.
    SELECT g.*, c.criticality, x.name AS exception, x.reason AS exception_reason, x.accepted_by,
           x.expires AS exception_expires,
           coalesce(list_position($levels, c.criticality), 0) AS crit_rank
    FROM groups g
    LEFT JOIN verdict_exceptions x ON x.run_id = $run_id AND x.n = g.entry
    LEFT JOIN LATERAL (
        SELECT arg_max(t.level, t.specificity * 10 + list_position($levels, t.level)) AS criticality
        FROM target_criticality t WHERE t.run_id = $run_id AND lower(g.target) GLOB t.pattern
    ) c ON true
    QUALIFY row_number() OVER (PARTITION BY g.verdict
                               ORDER BY crit_rank DESC, g.n DESC, g.account, g.target) <= $limit
)
SELECT r.account, r.target, r.verdict, r.status,
       """ + issue_key_sql("r.account", "r.target", "r.verdict") + """ AS issue_key,
       r.n, r.first, r.last,
       trim(coalesce(s.action, '') || ' ' || coalesce(s.detail, '')) AS sample, r.approval,
       r.ticket_id, r.reason, r.new, r.criticality, r.exception,
       r.exception_reason, r.accepted_by, r.exception_expires
FROM ranked r JOIN activity s ON s.act_id = r.sample_id
ORDER BY r.crit_rank DESC, list_position($severity, r.verdict), r.n DESC, r.account, r.target,
         r.verdict
"""

# Levels from the least to the most critical (list_position: higher is more critical).
LEVELS = list(reversed(CRITICALITY))
# Verdicts from the worst: the reverse of the order in which a candidate wins (docs/verdicts.md).
VERDICT_SEVERITY = list(reversed(VERDICTS))

# Issue keys (account, target, verdict; FAIL or WARN) new in a run and resolved since $previous.
ISSUE_CHANGES_SQL = """
WITH cur AS (
    SELECT DISTINCT a.account, a.target, f.verdict FROM findings f JOIN activity a USING (act_id)
    WHERE f.run_id = $run_id AND f.status IN ('FAIL', 'WARN')
), prev AS (
    SELECT DISTINCT a.account, a.target, f.verdict FROM findings f JOIN activity a USING (act_id)
    WHERE f.run_id = $previous AND f.status IN ('FAIL', 'WARN')
)
SELECT (SELECT count(*) FROM (SELECT * FROM cur EXCEPT SELECT * FROM prev)) AS new,
       (SELECT count(*) FROM (SELECT * FROM prev EXCEPT SELECT * FROM cur)) AS resolved,
       (SELECT count(*) FROM (SELECT * FROM cur INTERSECT SELECT * FROM prev)) AS still
"""

PREVIOUS_RUN_SQL = "SELECT max(run_id) FROM runs WHERE run_id < ?"


def previous_run(store: Store, run_id: int) -> int | None:
    return store.scalar(PREVIOUS_RUN_SQL, [run_id])


def issue_groups(store: Store, run_id: int, previous: int | None, limit: int) -> list[dict]:
    """A run's FAIL and WARN findings grouped by issue, excepted groups included (`exception`
    set), in report order: criticality, verdict severity, count."""
    return store.query_dicts(ISSUE_GROUPS_SQL, {"run_id": run_id, "previous": previous,
                                                "limit": limit, "levels": LEVELS,
                                                "severity": VERDICT_SEVERITY})


def issue_changes(store: Store, run_id: int, previous: int) -> dict:
    return store.query_dicts(ISSUE_CHANGES_SQL, {"run_id": run_id, "previous": previous})[0]


def _when(ts) -> str:
    """A period bound as a date when it falls on midnight UTC, else as an ISO time."""
    ts = ts.astimezone(timezone.utc)
    if (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
        return ts.date().isoformat()
    return ts.isoformat().replace("+00:00", "Z")


def period_note(previous: dict, start, end, weekly: bool = False) -> str | None:
    """What to say when the run compared with (`previous`: run_id, period_start, period_end) did
    not judge the period just before [start, end): None when it did. A gap or an overlap
    changes what "new" and "resolved" mean, so it is never silent."""
    ps, pe = previous["period_start"], previous["period_end"]
    if pe is not None and start is not None and pe == start:
        return None
    span = (f"{_when(ps) if ps is not None else 'the first record'}.."
            f"{_when(pe) if pe is not None else 'the last record'}")
    if ps == start and pe == end:
        how = "the same period judged again"
    elif pe is not None and start is not None and pe < start:
        gap = start - pe
        if weekly and gap.days % 7 == 0 and not gap.seconds:
            n = gap.days // 7
            how = f"not the previous week ({n} week{'' if n == 1 else 's'} between without a " \
                  f"weekly run)"
        else:
            how = f"not the adjacent period ({_when(pe)}..{_when(start)} was not judged)"
    else:
        how = "not the adjacent period: the two periods overlap"
    return f"compared with run {previous['run_id']} ({span}), {how}"


# Approval hygiene per check of a run (correlate/sql/hygiene.sql): findings, judged, not judged.
COUNTS_SQL = """
SELECT h.check_id, h.judged, h.not_judged, count(c.check_id) AS n
FROM hygiene_counts h
LEFT JOIN approval_checks c ON c.run_id = h.run_id AND c.check_id = h.check_id
                            AND c.family = 'hygiene'
WHERE h.run_id = ? GROUP BY ALL
"""


def hygiene_counts(store: Store, run_id: int) -> list[dict]:
    """Per check, in the checks' order: severity, control, title, findings (n), judged and not
    judged (with why). Runs made before hygiene existed give no rows."""
    got = {r["check_id"]: r for r in store.query_dicts(COUNTS_SQL, [run_id])}
    out = []
    for check_id, (severity, control, title) in CHECKS.items():
        if check_id not in got:
            continue
        r = got[check_id]
        out.append({"check_id": check_id, "severity": severity, "control": control,
                    "title": title, "n": r["n"], "judged": r["judged"],
                    "not_judged": r["not_judged"],
                    "not_judged_why": NOT_JUDGED.get(check_id, "")})
    return out
