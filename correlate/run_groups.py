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


# A run whose groups were written with it has a run_summaries row (none before schema 066).
WRITTEN_SQL = """
SELECT count(*) FROM duckdb_tables() t
WHERE t.database_name = current_database() AND t.schema_name = 'main'
  AND t.table_name = 'run_summaries'
"""


def written(store, run_id: int) -> bool:
    """True when run_id's groups were written with it (correlate, load-run)."""
    return bool(store.scalar(WRITTEN_SQL)) and bool(
        store.scalar("SELECT count(*) FROM run_summaries WHERE run_id = ?", [run_id]))


def record_groups(con, run_id: int, engine: bool = True) -> None:
    """Write run_id's groups and summary (inside the run's transaction). `engine`: the run's
    findings are finding_refs (correlate), else findings_v1 (load-run)."""
    statements = GROUP_STATEMENTS if engine else ("INSERT INTO run_groups\n" + BY_DEFINITION,
                                                  SUMMARY_SQL)
    for statement in statements:
        con.execute(statement, {"run_id": run_id})
