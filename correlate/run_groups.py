"""A run's findings counted once per group when the run is written (schema 066), so the gap
report reads groups, not 1e7 findings (issue 11). The SQL is correlate/sql/run_groups.sql."""

from __future__ import annotations

from correlate.store import read_sql

# BY_DEFINITION: over the findings view (any run); FROM_REFS: the same rows, faster, for a run
# the engine wrote (finding_refs).
BY_DEFINITION, FROM_REFS = [
    "\n".join(line for line in part.splitlines() if not line.strip().startswith("--"))
    for part in read_sql("run_groups.sql").split("\n;\n")]

SUMMARY_SQL = ("INSERT INTO run_summaries SELECT $run_id, coalesce(sum(n), 0), count(*) "
               "FROM run_groups WHERE run_id = $run_id")

# What correlate/engine.py appends once a run's findings and exceptions are written.
GROUP_STATEMENTS = ("INSERT INTO run_groups\n" + FROM_REFS, SUMMARY_SQL)


def record_groups(con, run_id: int, engine: bool = True) -> None:
    """Write run_id's groups and summary (inside the run's transaction). `engine`: the run's
    findings are finding_refs (correlate), else findings_v1 (load-run)."""
    statements = GROUP_STATEMENTS if engine else ("INSERT INTO run_groups\n" + BY_DEFINITION,
                                                  SUMMARY_SQL)
    for statement in statements:
        con.execute(statement, {"run_id": run_id})
