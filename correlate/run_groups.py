"""A run's findings counted once per group when the run is written (schema 066), so the gap
report reads groups, not 1e7 findings (issue 11), and its busy accounts' timelines binned in
the same pass (schema 068). The SQL is correlate/sql/run_groups.sql and run_timeline.sql."""

from __future__ import annotations

from correlate.store import read_sql

TIMELINE_WIDTH = 900        # the gap report's SVG width: pixel columns of a timeline
TIMELINE_BIN_ABOVE = 2000   # an account with more actions is binned (reports/gaps.py reads it)


def _parts(name: str) -> list[str]:
    """The statements of correlate/sql/NAME (a line holding only ';' between), no comments."""
    return ["\n".join(line for line in part.splitlines() if not line.strip().startswith("--"))
            for part in read_sql(name).split("\n;\n")]


# BY_DEFINITION: over the findings view (any run); FROM_PARTS: the same rows, faster, for a run
# the engine wrote (finding_refs), from run_timeline.sql's rg_parts.
BY_DEFINITION, FROM_PARTS = _parts("run_groups.sql")
TIMELINE_PASS = _parts("run_timeline.sql")      # period, flags, rg_parts; then the bins
PASS_SQL, BINS_SQL = TIMELINE_PASS[:-2], TIMELINE_PASS[-2:]

SUMMARY_SQL = ("INSERT INTO run_summaries SELECT $run_id, coalesce(sum(n), 0), count(*) "
               "FROM run_groups WHERE run_id = $run_id")

SCRATCH = ("rg_period", "rg_marks", "rg_signs", "rg_flags", "rg_sequences", "rg_parts")

MACROS = ("rg_raw_verdict", "rg_verdict", "rg_status")       # run_timeline.sql's

# What correlate/engine.py runs once a run's findings, exceptions and detections are written
# (it drops SCRATCH and MACROS with the rest of the run's scratch, on success or failure).
GROUP_STATEMENTS = (*PASS_SQL, "INSERT INTO run_groups\n" + FROM_PARTS, SUMMARY_SQL, *BINS_SQL)


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


def group_params(start, end) -> dict:
    """The parameters GROUP_STATEMENTS bind besides $run_id (the run's period, the bins')."""
    from correlate.detect.rules import SEVERITIES     # not at import: the report reads BY_DEFINITION
    return {"start": start, "end": end, "width": TIMELINE_WIDTH,
            "above": TIMELINE_BIN_ABOVE, "severities": list(SEVERITIES)}


def record_loaded_groups(con, run_id: int) -> None:
    """Write the groups and summary of a run load-run stored (findings_v1), inside its
    transaction, by definition over the findings view; no timeline bins (the report bins those
    runs' actions itself). correlate's runs take GROUP_STATEMENTS (correlate/engine.py)."""
    for statement in ("INSERT INTO run_groups\n" + BY_DEFINITION, SUMMARY_SQL):
        con.execute(statement, {"run_id": run_id})
