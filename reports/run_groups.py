"""The gap report's counts read from a run's groups (schema 066, correlate/run_groups.py), not
from its findings: totals, accounts, identity kinds, issues, what changed, failed attempts.
A run written before the groups existed is grouped here with the same SELECT (slower, same
rows). Every number equals the count over the findings (tests/test_run_groups.py)."""

from __future__ import annotations

from correlate.queries import LEVELS, VERDICT_SEVERITY, issue_key_sql
from correlate.run_groups import BY_DEFINITION
from correlate.store import Store, drop_temp

TABLE = "report_groups"       # a temp view or table: the groups of the runs the report reads

STORED_SQL = """
INSERT INTO report_groups SELECT * FROM run_groups
WHERE list_contains($runs, run_id) AND run_id IN (SELECT run_id FROM run_summaries)
"""

HAS_TABLES_SQL = """
SELECT count(*) = 2 FROM duckdb_tables()
WHERE database_name = current_database() AND schema_name = 'main'
  AND table_name IN ('run_groups', 'run_summaries')
"""


def stored_runs(store: Store) -> set[int]:
    """Runs whose groups were written with them (none in a store from before schema 066)."""
    if not store.scalar(HAS_TABLES_SQL):
        return set()
    return {r for (r,) in store.query("SELECT run_id FROM run_summaries")}


def load_groups(store: Store, runs: list[int]) -> None:
    """Make report_groups the groups of `runs`: a view of run_groups when every run has its
    groups stored (run ids are ints, formatted in: a view takes no parameters), else a temp
    table of the stored ones and the others grouped now."""
    runs = sorted({r for r in runs if r is not None})
    stored = stored_runs(store)
    drop_temp(store.con, TABLE)      # a report before on this connection
    if set(runs) <= stored:     # read in place: copying 477k groups at 1e7 cost 0.2 s
        store.query(f"CREATE OR REPLACE TEMP VIEW {TABLE} AS SELECT * FROM run_groups "
                    f"WHERE run_id IN ({', '.join(str(int(r)) for r in runs) or 'NULL'})")
        return
    store.query(f"CREATE TEMP TABLE {TABLE} AS "
                f"SELECT * FROM ({BY_DEFINITION}) WHERE false", {"run_id": 0})
    if stored & set(runs):
        store.query(STORED_SQL, {"runs": sorted(stored & set(runs))})
    for run in runs:
        if run not in stored:
            store.query(f"INSERT INTO {TABLE} {BY_DEFINITION}", {"run_id": run})


# excepted: findings of the verdict an accepted exception covers (counted in n too).
VERDICT_TOTALS_SQL = """
SELECT verdict, status, sum(n)::BIGINT AS n,
       coalesce(sum(n) FILTER (WHERE entry IS NOT NULL), 0)::BIGINT AS excepted
FROM report_groups WHERE run_id = ? GROUP BY ALL ORDER BY n DESC, verdict
"""

# warn, fail: what no accepted exception covers; excepted (FAIL and WARN) counted apart, so
# pass + warn + fail + excepted + INFO = total. excepted_fail: for the timeline's FAIL marks.
# identity kind: identities.csv, else what the source said (bots, service principals).
ACCOUNTS_SQL = """
SELECT g.account AS account, sum(n)::BIGINT AS total,
       coalesce(sum(n) FILTER (WHERE status = 'PASS'), 0)::BIGINT AS pass,
       coalesce(sum(n) FILTER (WHERE status = 'WARN' AND entry IS NULL), 0)::BIGINT AS warn,
       coalesce(sum(n) FILTER (WHERE status = 'FAIL' AND entry IS NULL), 0)::BIGINT AS fail,
       coalesce(sum(n) FILTER (WHERE entry IS NOT NULL), 0)::BIGINT AS excepted,
       coalesce(sum(n) FILTER (WHERE entry IS NOT NULL AND status = 'FAIL'), 0)::BIGINT
           AS excepted_fail,
       count(DISTINCT g.target) AS targets, min(g.first) AS first, max(g.last) AS last,
       coalesce(any_value(i.kind), any_value(g.actor_kind), '') AS kind
FROM report_groups g LEFT JOIN identities i ON i.alias_norm = lower(g.account)
WHERE g.run_id = ?
GROUP BY g.account ORDER BY fail DESC, warn DESC, excepted DESC, total DESC, account LIMIT ?
"""

KINDS_SQL = """
SELECT coalesce(i.kind, g.actor_kind, 'unknown') AS kind, sum(n)::BIGINT AS total,
       coalesce(sum(n) FILTER (WHERE status = 'PASS'), 0)::BIGINT AS pass,
       coalesce(sum(n) FILTER (WHERE status = 'WARN' AND entry IS NULL), 0)::BIGINT AS warn,
       coalesce(sum(n) FILTER (WHERE status = 'FAIL' AND entry IS NULL), 0)::BIGINT AS fail,
       coalesce(sum(n) FILTER (WHERE entry IS NOT NULL), 0)::BIGINT AS excepted
FROM report_groups g LEFT JOIN identities i ON i.alias_norm = lower(g.account)
WHERE g.run_id = ? GROUP BY 1 ORDER BY fail DESC, kind
"""

ACCOUNT_STATUS_SQL = """
SELECT status, sum(n)::BIGINT AS n FROM report_groups WHERE run_id = ? AND account = ?
GROUP BY status
"""

PERIOD_SQL = "SELECT min(first), max(last) FROM report_groups WHERE run_id = ?"

FAILED_ATTEMPTS_SQL = """
SELECT account, source, sum(n)::BIGINT AS n FROM report_groups
WHERE run_id = ? AND verdict = 'attempt_failed'
GROUP BY ALL ORDER BY n DESC, account, source
"""

# The issues (account, target, verdict that FAIL or WARN; correlate/queries.py ISSUE_GROUPS_SQL
# counts the same over the findings): the $limit first of each verdict in report order
# (criticality, count), with how many issues each verdict has (`verdict_issues`, excepted ones
# apart) so the report can say how many it does not list.
ISSUE_GROUPS_SQL = """
WITH prev AS (
    SELECT DISTINCT account, target, verdict FROM report_groups
    WHERE run_id = $previous AND status IN ('FAIL', 'WARN')
), keyed AS (
    SELECT account, target, verdict, status, entry, sum(n)::BIGINT AS n
    FROM report_groups
    WHERE run_id = $run_id AND status IN ('FAIL', 'WARN')
    GROUP BY account, target, verdict, status, entry
), rated AS (
    SELECT g.*, c.criticality, coalesce(list_position($levels, c.criticality), 0) AS crit_rank
    FROM keyed g
    LEFT JOIN LATERAL (
        SELECT arg_max(t.level, t.specificity * 10 + list_position($levels, t.level)) AS criticality
        FROM target_criticality t WHERE t.run_id = $run_id AND lower(g.target) GLOB t.pattern
    ) c ON true
), cut AS (
    -- per verdict the $limit-th best (criticality, count): only issues at or above it can be
    -- listed, so the ranking below sorts a few hundred rows, not all (474k at 1e7: 1 s)
    SELECT verdict, count(*) FILTER (WHERE entry IS NULL) AS verdict_issues,
           list_min(max(crit_rank::HUGEINT * 1000000000000000000 + n, $limit)) AS floor
    FROM rated GROUP BY verdict
), ranked AS (
    -- only the issues listed get their first, last, sample, approval, ticket and reason
    SELECT g.*, x.name AS exception, x.reason AS exception_reason, x.accepted_by,
           x.expires AS exception_expires, k.verdict_issues
    FROM rated g
    JOIN cut k ON k.verdict = g.verdict
              AND g.crit_rank::HUGEINT * 1000000000000000000 + g.n >= k.floor
    LEFT JOIN verdict_exceptions x ON x.run_id = $run_id AND x.n = g.entry
    QUALIFY row_number() OVER (PARTITION BY g.verdict
                               ORDER BY crit_rank DESC, g.n DESC, g.account, g.target) <= $limit
), listed AS (
    SELECT r.account, r.target, r.verdict, r.status, r.entry, min(g.first) AS first,
           max(g.last) AS last, min(g.sample).act_id AS sample_id, min(g.approval) AS approval,
           min(g.ticket).ticket_id AS ticket_id, min(g.reason).reason AS reason
    FROM ranked r JOIN report_groups g
      ON g.run_id = $run_id AND g.account IS NOT DISTINCT FROM r.account
     AND g.target IS NOT DISTINCT FROM r.target AND g.verdict = r.verdict
     AND g.status = r.status AND g.entry IS NOT DISTINCT FROM r.entry
    GROUP BY r.account, r.target, r.verdict, r.status, r.entry
)
SELECT r.account, r.target, r.verdict, r.status,
       """ + issue_key_sql("r.account", "r.target", "r.verdict") + """ AS issue_key,
       r.n, l.first, l.last,
       trim(coalesce(s.action, '') || ' ' || coalesce(s.detail, '')) AS sample, l.approval,
       l.ticket_id, l.reason,
       $previous IS NOT NULL AND (r.account, r.target, r.verdict) NOT IN (
           SELECT (account, target, verdict) FROM prev) AS new,
       r.criticality, r.exception, r.exception_reason, r.accepted_by, r.exception_expires,
       r.verdict_issues
FROM ranked r
JOIN listed l ON l.account IS NOT DISTINCT FROM r.account
             AND l.target IS NOT DISTINCT FROM r.target AND l.verdict = r.verdict
             AND l.status = r.status AND l.entry IS NOT DISTINCT FROM r.entry
JOIN activity s ON s.act_id = l.sample_id
ORDER BY r.crit_rank DESC, list_position($severity, r.verdict), r.n DESC, r.account, r.target,
         r.verdict
"""

ISSUE_CHANGES_SQL = """
WITH cur AS (
    SELECT DISTINCT account, target, verdict FROM report_groups
    WHERE run_id = $run_id AND status IN ('FAIL', 'WARN')
), prev AS (
    SELECT DISTINCT account, target, verdict FROM report_groups
    WHERE run_id = $previous AND status IN ('FAIL', 'WARN')
)
SELECT (SELECT count(*) FROM (SELECT * FROM cur EXCEPT SELECT * FROM prev)) AS new,
       (SELECT count(*) FROM (SELECT * FROM prev EXCEPT SELECT * FROM cur)) AS resolved,
       (SELECT count(*) FROM (SELECT * FROM cur INTERSECT SELECT * FROM prev)) AS still
"""


def verdict_totals(store: Store, run_id: int) -> list[dict]:
    """[{verdict, status, n, excepted}], most findings first (queries.verdict_totals)."""
    return store.query_dicts(VERDICT_TOTALS_SQL, [run_id])


def accounts(store: Store, run_id: int, limit: int) -> list[dict]:
    return store.query_dicts(ACCOUNTS_SQL, [run_id, limit])


def kinds(store: Store, run_id: int) -> list[dict]:
    return store.query_dicts(KINDS_SQL, [run_id])


def account_status(store: Store, run_id: int, account: str) -> dict:
    return dict(store.query(ACCOUNT_STATUS_SQL, [run_id, account]))


def period(store: Store, run_id: int) -> tuple:
    return store.query(PERIOD_SQL, [run_id])[0]


def failed_attempts(store: Store, run_id: int) -> list[dict]:
    """Failed attempts per account and source, most first (queries.failed_attempts)."""
    return store.query_dicts(FAILED_ATTEMPTS_SQL, [run_id])


def issue_groups(store: Store, run_id: int, previous: int | None, limit: int) -> list[dict]:
    """The $limit first issues of each verdict, excepted ones included (queries.issue_groups)."""
    return store.query_dicts(ISSUE_GROUPS_SQL, {"run_id": run_id, "previous": previous,
                                                "limit": limit, "levels": LEVELS,
                                                "severity": VERDICT_SEVERITY})


def issue_changes(store: Store, run_id: int, previous: int) -> dict:
    return store.query_dicts(ISSUE_CHANGES_SQL, {"run_id": run_id, "previous": previous})[0]


# A busy account's timeline as `correlate` binned it (schema 068): the marks TIMELINE_BINS_SQL
# (reports/gaps.py) makes from the actions, every flagged and every FAIL bin and the first
# $limit others, read from a few thousand bins instead of the account's actions.
TIMELINE_RUN_SQL = """
SELECT t0, span, width, above FROM run_timelines WHERE run_id = ?
"""
HAS_BINS_SQL = """
SELECT count(*) = 2 FROM duckdb_tables()
WHERE database_name = current_database() AND schema_name = 'main'
  AND table_name IN ('run_timelines', 'run_timeline_bins')
"""
STORED_BINS_SQL = """
SELECT ts, verdicts AS verdict, status,
       CASE WHEN n = 1 THEN target
            ELSE target || ' and ' || (n - 1) || ' more action(s) here' END AS target,
       rules, severity, review, sequences, n
FROM run_timeline_bins WHERE run_id = $run_id AND account = $account
QUALIFY flagged OR status = 'FAIL' OR row_number() OVER (
    ORDER BY NOT flagged, CASE status WHEN 'FAIL' THEN 1 WHEN 'WARN' THEN 2
                                      WHEN 'INFO' THEN 3 ELSE 4 END, ts) <= $limit
ORDER BY ts, status, NOT flagged
"""


def stored_timeline(store: Store, run_id: int, t0: float, span: float, width: int,
                    above: int) -> bool:
    """Whether run_id's busy accounts were binned when it was written, over this period and
    width, for every account with more than `above` actions (else the report bins itself)."""
    if not store.scalar(HAS_BINS_SQL):
        return False
    row = store.query(TIMELINE_RUN_SQL, [run_id])
    if not row:
        return False
    s_t0, s_span, s_width, s_above = row[0]
    return (s_width == width and s_above <= above and abs(s_t0 - t0) < 1e-6
            and abs(s_span - span) < 1e-6)


def stored_bins(store: Store, run_id: int, account: str, limit: int) -> list[tuple]:
    """(ts, verdict, status, target, rules, severity, review, sequences, n) per mark."""
    return store.query(STORED_BINS_SQL, {"run_id": run_id, "account": account, "limit": limit})
