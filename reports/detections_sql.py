"""Detections as CSV and JSON lines rendered by DuckDB (as reports/export_sql.py renders the
findings): byte for byte what reports/detections.py write_csv / write_jsonl write, with no dict
per detection. tests/test_detections_sql.py compares them."""

from __future__ import annotations

from typing import IO

import duckdb

from correlate.errors import StoreError
from correlate.store import Store
from reports.detections import COLUMNS, DETECTIONS_SQL, detections_params
from reports.export_sql import BATCH, Order, copy_lines, csv_sql, jsonl_sql, write_lines

KINDS = {"ts": "ts", "attack": "list", "position": "int", "muted": "bool", "run_id": "int",
         "issue_key": "key"}

# DETECTIONS_SQL's own order (worst first), taken again outside it.
ORDER_KEYS = {"k_review": "CASE q.review WHEN 'FAIL' THEN 0 WHEN 'needs_review' THEN 1 ELSE 2 END",
              "k_rank": "list_position($severities, q.severity)", "k_ts": "q.ts",
              "k_source": "q.source", "k_event": "q.event_id", "k_rule": "q.rule_id",
              "k_seq": "q.sequence_id", "k_pos": "q.position"}
ORDER_BY = "k_review, k_rank DESC, k_ts, k_source, k_event, k_rule, k_seq, k_pos"
ORDER = Order(ORDER_KEYS, "ORDER BY " + ORDER_BY)

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


_ROW_ORDER = ORDER_BY
for _k, _expr in ORDER_KEYS.items():
    _ROW_ORDER = _ROW_ORDER.replace(_k, _expr)

# group_detections in SQL: each row's place in DETECTIONS_SQL's order (rn); a sequence's rows
# share the place of its first row (grank) and follow in (position, time) order.
GROUPS_SQL = f"""
WITH d AS (
    SELECT q.*, row_number() OVER (ORDER BY {_ROW_ORDER}) AS rn
    FROM ({DETECTIONS_SQL}) q
)
SELECT * EXCLUDE (rn), min(rn) OVER (PARTITION BY sequence_id,
                                     CASE WHEN sequence_id IS NULL THEN rn END) AS grank
FROM d ORDER BY grank, coalesce(position, 0), ts, rn
"""


def detection_groups(store: Store, **filters):
    """group_detections(detections(store, **filters)), one group at a time: never every
    detection in memory."""
    try:
        cur = store.con.execute(GROUPS_SQL, detections_params(store, **filters))
        names = [d[0] for d in cur.description]
        group: list[dict] = []
        current = None
        while rows := cur.fetchmany(BATCH):
            for row in rows:
                r = dict(zip(names, row))
                grank = r.pop("grank")
                r["attack"] = list(r["attack"] or [])
                if group and grank != current:
                    yield group
                    group = []
                current = grank
                group.append(r)
        if group:
            yield group
    except duckdb.Error as exc:
        raise StoreError(str(exc)) from exc
