"""Detections as CSV and JSON lines rendered by DuckDB (as reports/export_sql.py renders the
findings): byte for byte what reports/detections.py write_csv / write_jsonl write, with no dict
per detection. tests/test_detections_sql.py compares them."""

from __future__ import annotations

from typing import IO

from reports.detections import COLUMNS, DETECTIONS_SQL, detections_params
from reports.export_sql import Order, copy_lines, csv_sql, jsonl_sql, write_lines
from correlate.store import Store

KINDS = {"ts": "ts", "attack": "list", "position": "int", "muted": "bool", "run_id": "int",
         "issue_key": "key"}

# DETECTIONS_SQL's own order (worst first), taken again outside it.
ORDER = Order({"k_review": "CASE q.review WHEN 'FAIL' THEN 0 WHEN 'needs_review' THEN 1 ELSE 2 END",
               "k_rank": "list_position($severities, q.severity)", "k_ts": "q.ts",
               "k_source": "q.source", "k_event": "q.event_id", "k_rule": "q.rule_id",
               "k_seq": "q.sequence_id", "k_pos": "q.position"},
              "ORDER BY k_review, k_rank DESC, k_ts, k_source, k_event, k_rule, k_seq, k_pos")

DETECTIONS_CSV_SQL = csv_sql(COLUMNS, KINDS, DETECTIONS_SQL, ORDER)
DETECTIONS_JSONL_SQL = jsonl_sql(COLUMNS, KINDS, DETECTIONS_SQL, ORDER)
COPY_SQL = {"csv": csv_sql(COLUMNS, KINDS, DETECTIONS_SQL, ORDER, True),
            "jsonl": jsonl_sql(COLUMNS, KINDS, DETECTIONS_SQL, ORDER, True)}


def write_detections(store: Store, fmt: str, out: IO[str], **filters) -> int:
    """A run's detections as CSV (with header) or JSON lines, rendered in SQL; returns how many.
    `filters`: reports.detections.detections_params's."""
    params = detections_params(store, **filters)
    if fmt == "csv":
        return write_lines(store, DETECTIONS_CSV_SQL, params, out, ",".join(COLUMNS) + "\n")
    if fmt == "jsonl":
        return write_lines(store, DETECTIONS_JSONL_SQL, params, out)
    raise ValueError(f"format must be csv or jsonl, not {fmt!r}")


def copy_detections(store: Store, fmt: str, path, **filters) -> int:
    """write_detections's bytes written by DuckDB straight to `path`."""
    return copy_lines(store, COPY_SQL[fmt], detections_params(store, **filters), path,
                      fmt == "csv")
