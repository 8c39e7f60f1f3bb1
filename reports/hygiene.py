"""A run's approval hygiene findings (correlate/sql/hygiene.sql) read for the outputs: the rows,
and the CSV (formula-safe), JSON lines and table writers. No check logic."""

from __future__ import annotations

import json
from typing import IO, Iterable

from correlate import queries
from correlate.errors import printable
from correlate.hygiene import CHECK_IDS, CHECKS, SEVERITY_ORDER
from correlate.store import Store
from reports.export import formula_safe, write_aligned, write_csv_rows, write_dict_lines

# What every output writes, in this order (the CLI, the bundle's CSV and JSON lines).
COLUMNS = ("check_id", "severity", "control", "approval_source", "approval_id", "account",
           "target", "ticket_id", "event_id", "detail", "evidence", "run_id")

TABLE_COLUMNS = ("severity", "check_id", "approval_id", "account", "target", "ticket_id",
                 "detail")

# Worst first (FAIL, WARN, INFO), then in the checks' order, then by approval or action.
HYGIENE_SQL = """
SELECT c.check_id, c.severity, c.approval_source, c.approval_id, c.account, c.target,
       c.ticket_id, a.event_id, c.detail, c.evidence, c.run_id
FROM approval_checks c LEFT JOIN activity a ON a.act_id = c.act_id
WHERE c.run_id = $run_id AND c.family = 'hygiene' AND ($check IS NULL OR c.check_id = $check)
ORDER BY list_position($severities, c.severity), list_position($checks, c.check_id),
         c.approval_source NULLS FIRST, c.approval_id NULLS FIRST, a.event_id NULLS FIRST,
         c.account, c.target, c.detail
LIMIT $limit
"""

def hygiene_rows(store: Store, run_id: int | None = None, check: str | None = None,
                 limit: int | None = None) -> list[dict]:
    """The run's hygiene findings (latest run by default), worst first."""
    run_id = queries.resolve_run(store, run_id)
    if check is not None and check not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(CHECK_IDS)}, not {check!r}")
    rows = store.query_dicts(HYGIENE_SQL, {
        "run_id": run_id, "check": check, "severities": list(SEVERITY_ORDER),
        "checks": list(CHECK_IDS), "limit": limit if limit is not None else 2**62})
    for r in rows:
        r["control"] = CHECKS[r["check_id"]][1]
    return rows


def write_csv(rows: Iterable[dict], out: IO[str]) -> int:
    """Formula-safe CSV of COLUMNS (evidence as its JSON text), "\n" line ends."""
    return write_csv_rows(rows, COLUMNS, out)


def row_dict(r: dict) -> dict:
    """COLUMNS of one row as JSON-ready values (evidence as a JSON object)."""
    d = {c: r[c] for c in COLUMNS}
    d["evidence"] = json.loads(r["evidence"]) if r["evidence"] else None
    return d


def write_jsonl(rows: Iterable[dict], out: IO[str]) -> int:
    return write_dict_lines(map(row_dict, rows), out)


def write_table(rows: Iterable[dict], out: IO[str]) -> int:
    """A plain table for a terminal: control characters shown escaped, long details cut."""
    def show(r, c):
        text = printable(formula_safe(r[c]))
        if c == "approval_id" and not r[c] and r["event_id"]:    # a bypass names its action
            text = printable(formula_safe(f"event {r['event_id']}"))
        limit = 100 if c == "detail" else 40
        return text if len(text) <= limit else text[:limit - 3] + "..."
    return write_aligned(TABLE_COLUMNS, [[show(r, c) for c in TABLE_COLUMNS] for r in rows], out)


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "table": write_table}
