"""One Spark task's work, without Spark: a fresh in-memory store, the broadcast reference
tables, the task's actions through the generic ingest, the embedded verdict SQL (engine.py).

Nothing here imports pyspark: tests call `judge_actions` directly on any split of the actions,
and correlate/spark_engine.py calls it from `mapInArrow`. A verdict depends only on the action
and the windows of its (account, target) key, which come from the broadcast approvals alone,
so how the actions are split between tasks cannot change an answer (docs/scale.md).
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.clock import now_utc
from correlate.detect.run import DetectionSettings
from correlate.engine import Policy, correlate
from correlate.exceptions import VerdictException, record_exceptions
from correlate.ingest import ingest
from correlate.store import Store

# What the verdict SQL reads besides activity: small, sent to every task once (a broadcast).
REFERENCE_TABLES = ("identities", "targets", "approvals", "tickets", "ticket_history",
                    "ticket_approvals", "ticket_unverifiable")

# The generic activity contract's columns, in the order tasks receive them.
ACTIVITY_COLUMNS = ("event_id", "ts", "account", "target", "action", "detail", "session_id",
                    "actor", "approval_ref", "outcome")
ORIGIN_COLUMNS = ("source_file", "source_row")     # where Spark read the record

# One row per judged action: the action as stored and its finding, with the accepted exception
# that covers it (its place in the config and its name; NULL: none).
FINDINGS_OUT_SQL = """
SELECT a.event_id, a.ts, a.account, a.target, a.action, a.detail, a.session_id, a.actor,
       a.approval_ref, f.outcome, f.verdict, f.status, f.approval_id, f.approval_source,
       f.ticket_id, f.gap_seconds, f.reason, f.match_via, e.n AS exception_n,
       x.name AS exception
FROM findings f JOIN activity a ON a.act_id = f.act_id
LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id
LEFT JOIN verdict_exceptions x ON x.run_id = e.run_id AND x.n = e.n
WHERE f.run_id = $run_id
"""
# Per entry: the task's findings it covers (in force) or would have covered (expired); these
# sum over tasks, since an entry matches findings one (account, target, verdict) key at a time.
EXCEPTION_COUNTS_SQL = "SELECT n, findings FROM verdict_exceptions WHERE run_id = ?"
FINDING_TYPES = (
    ("event_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("account", pa.string()),
    ("target", pa.string()), ("action", pa.string()), ("detail", pa.string()),
    ("session_id", pa.string()), ("actor", pa.string()), ("approval_ref", pa.string()),
    ("outcome", pa.string()), ("verdict", pa.string()), ("status", pa.string()),
    ("approval_id", pa.string()), ("approval_source", pa.string()), ("ticket_id", pa.string()),
    ("gap_seconds", pa.float64()), ("reason", pa.string()), ("match_via", pa.string()),
    ("exception_n", pa.int32()), ("exception", pa.string()))
# A task's output: findings, plus rows of kind 'quarantine' and one 'tally' carrying JSON.
OUTPUT_SCHEMA = pa.schema([*FINDING_TYPES, ("record", pa.string()), ("note", pa.string())])

# One row per detection of the task's run, keyed by the action's event_id; a sequence is named
# by its rule and its members' event ids (act_id is the task's own), load_run.py renames it.
DETECTIONS_OUT_SQL = """
WITH d AS (SELECT d.*, a.event_id, a.ts FROM detections d JOIN activity a USING (act_id)
           WHERE d.run_id = $run_id),
s AS (SELECT rule_id, sequence_id,
             md5(rule_id || ':' || string_agg(event_id, ',' ORDER BY position)) AS sequence
      FROM d WHERE sequence_id IS NOT NULL GROUP BY rule_id, sequence_id)
SELECT d.event_id, d.ts, d.rule_id, s.sequence, d.position, d.review, d.muted_by
FROM d LEFT JOIN s USING (rule_id, sequence_id)
"""
DETECTION_TYPES = (
    ("event_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("rule_id", pa.string()),
    ("sequence", pa.string()), ("position", pa.int32()), ("review", pa.string()),
    ("muted_by", pa.string()))
DETECTION_SCHEMA = pa.schema(DETECTION_TYPES)

QUARANTINE_OUT_SQL = """
SELECT o.source_file, o.source_row, q.reason, q.raw
FROM quarantine q LEFT JOIN origin o ON o.line = q.line
"""


def reference_tables(con: duckdb.DuckDBPyConnection) -> dict[str, bytes]:
    """The reference tables of a store as Arrow IPC streams (only those holding rows)."""
    out = {}
    for name in REFERENCE_TABLES:
        table = con.sql(f"SELECT * FROM {name}").to_arrow_table()
        if table.num_rows:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            out[name] = sink.getvalue().to_pybytes()
    return out


def _load_reference(con, reference: dict[str, bytes]) -> None:
    for name, data in reference.items():
        if name not in REFERENCE_TABLES:
            raise ValueError(f"not a reference table: {name}")
        table = pa.ipc.open_stream(data).read_all()
        con.register("ref_src", table)
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM ref_src")
        con.unregister("ref_src")


def _write_actions(actions: pa.Table, path: Path) -> None:
    """The task's actions as one Parquet file in the order the embedded engine reads them
    (file name, then row): the first of two records with one event_id is the one kept."""
    con = duckdb.connect()      # its own: preserve_insertion_order stays on for the ORDER BY
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("acts", actions)
        con.execute(f"COPY (SELECT * FROM acts ORDER BY source_file, source_row) "
                    f"TO '{path}' (FORMAT parquet)")
    finally:
        con.close()


def detect_actions(reference: dict[str, bytes], actions: pa.Table, start: datetime | None,
                   end: datetime | None, policy: Policy = Policy(), tz: str | None = None,
                   settings: DetectionSettings = DetectionSettings(),
                   keep: tuple[str, ...] | None = None) -> pa.Table:
    """Detections (DETECTION_SCHEMA) for `actions` of the rules `keep` (all when None): the
    embedded engine's correlate(), detections on, in a fresh in-memory store. `actions` must
    hold every action a kept sequence rule may group together (spark_engine splits them by a
    column the rule groups by)."""
    with tempfile.TemporaryDirectory(prefix="pamcorr-task-") as tmp:
        path = Path(tmp) / "actions.parquet"
        _write_actions(actions, path)
        store = Store(":memory:")
        try:
            _load_reference(store.con, reference)
            ingest(store, GenericConnector(), "activity", [str(path)], Options(tz=tz))
            run_id = correlate(store, start, end, policy, detections=settings)
            found = store.con.sql(DETECTIONS_OUT_SQL, params={"run_id": run_id}).to_arrow_table()
        finally:
            store.close()
    if keep is not None:
        found = found.filter(pa.compute.is_in(found["rule_id"], pa.array(keep, pa.string())))
    return found.cast(DETECTION_SCHEMA)


def judge_actions(reference: dict[str, bytes], actions: pa.Table, start: datetime | None,
                  end: datetime | None, policy: Policy = Policy(),
                  tz: str | None = None, exceptions: tuple[VerdictException, ...] = (),
                  now: datetime | None = None) -> pa.Table:
    """Findings (OUTPUT_SCHEMA) for `actions` (ACTIVITY_COLUMNS + ORIGIN_COLUMNS), with the
    quarantined records and one tally row (read, accepted, quarantined, duplicates, findings
    per exception entry). `exceptions` are matched as the embedded engine matches them
    (correlate/exceptions.py), expired ones decided by `now`, the whole run's start (one
    clock for every task, not each task's own)."""
    with tempfile.TemporaryDirectory(prefix="pamcorr-task-") as tmp:
        path = Path(tmp) / "actions.parquet"
        _write_actions(actions, path)
        store = Store(":memory:")
        try:
            con = store.con
            _load_reference(con, reference)
            (result,) = ingest(store, GenericConnector(), "activity", [str(path)],
                               Options(tz=tz))
            run_id = correlate(store, start, end, policy,
                               detections=DetectionSettings(enabled=False))
            if exceptions:
                record_exceptions(con, run_id, now or now_utc(), exceptions)
            covered = dict(con.execute(EXCEPTION_COUNTS_SQL, [run_id]).fetchall())
            # row k of the file (a quarantined record's `line`) came from source_file/source_row
            con.execute("CREATE TEMP TABLE origin AS SELECT file_row_number + 1 AS line, "
                        "source_file, source_row FROM read_parquet(?, file_row_number = true)",
                        [str(path)])
            findings = con.sql(FINDINGS_OUT_SQL, params={"run_id": run_id}).to_arrow_table()
            quarantined = con.execute(QUARANTINE_OUT_SQL).fetchall()
        finally:
            store.close()
    findings = findings.cast(pa.schema(FINDING_TYPES))
    n = findings.num_rows
    findings = findings.append_column("record", pa.array(["finding"] * n, pa.string()))
    findings = findings.append_column("note", pa.nulls(n, pa.string()))
    notes = [("quarantine", json.dumps({"file": f, "row": r, "reason": why, "raw": raw}))
             for f, r, why, raw in quarantined]
    counted = findings.group_by(["verdict", "status"]).aggregate([("verdict", "count")])
    verdicts = {f"{v} {s}": n for v, s, n in zip(counted["verdict"].to_pylist(),
                                                 counted["status"].to_pylist(),
                                                 counted["verdict_count"].to_pylist())}
    notes.append(("tally", json.dumps({"read": result.read, "accepted": result.accepted,
                                       "quarantined": result.quarantined,
                                       "duplicates": result.duplicates,
                                       "judged": n, "verdicts": verdicts,
                                       "exceptions": covered})))
    extra = pa.table({**{name: pa.nulls(len(notes), kind) for name, kind in FINDING_TYPES},
                      "record": pa.array([k for k, _ in notes], pa.string()),
                      "note": pa.array([v for _, v in notes], pa.string())})
    return pa.concat_tables([findings, extra.cast(OUTPUT_SCHEMA)])
