"""A run judged elsewhere (the Spark engine's output folder) loaded into the store as a run,
so that `findings`, `report gaps`, `scope` and `export` read it like any other.

The judged actions come in through the generic connector's Parquet reader (same checks and
de-duplication as `pamcorr ingest`); each finding is stored finished in findings_v1 (schema
045), joined to its action by (source, event_id); the run's accepted exceptions, the findings
they cover and its target criticality as the embedded engine stores them (correlate/exceptions.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.errors import InputError
from correlate.ingest import ingest
from correlate.run_groups import record_loaded_groups
from correlate.store import Store

LOADED_SQL = ("SELECT run_id FROM runs WHERE json_extract_string(parameters, '$.loaded_from') = ? "
              "AND json_extract_string(parameters, '$.spark_started') = ?")

INSERT_FINDINGS_SQL = """
INSERT INTO findings_v1 (run_id, act_id, verdict, status, approval_id, approval_source,
                         ticket_id, gap_seconds, reason, match_via, outcome)
SELECT $run_id, a.act_id, f.verdict, f.status, f.approval_id, f.approval_source, f.ticket_id,
       f.gap_seconds, f.reason, f.match_via, f.outcome
FROM read_parquet($files) f
JOIN activity a ON a.source = $source AND a.event_id = f.event_id
"""

# The accepted exceptions the Spark run was judged with (summary.json, findings summed over its
# tasks) and the findings each covers (the findings' exception_n), as record_exceptions stores
# them for an embedded run (correlate/exceptions.py).
EXCEPTION_ROW_SQL = "INSERT INTO verdict_exceptions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_COVERED_SQL = """
INSERT INTO finding_exceptions
SELECT $run_id, a.act_id, f.exception_n
FROM read_parquet($files) f
JOIN activity a ON a.source = $source AND a.event_id = f.event_id
WHERE f.exception_n IS NOT NULL
"""
CRITICALITY_ROW_SQL = "INSERT INTO target_criticality VALUES (?, ?, ?, ?)"

# A sequence's id as the embedded engine makes it (detect/sequences.py): a hash of its rule and
# its members' act_ids in order; the output names it by its members' event ids instead.
INSERT_DETECTIONS_SQL = """
INSERT INTO detections
WITH d AS (SELECT d.rule_id, d.sequence, d.position, d.review, d.muted_by, a.act_id
           FROM read_parquet($files, hive_partitioning = false) d
           JOIN activity a ON a.source = $source AND a.event_id = d.event_id),
s AS (SELECT rule_id, sequence,
             md5(rule_id || ':' || string_agg(act_id::VARCHAR, ',' ORDER BY position)) AS sid
      FROM d WHERE sequence IS NOT NULL GROUP BY rule_id, sequence)
SELECT $run_id, d.act_id, d.rule_id, s.sid, d.position, d.review, d.muted_by
FROM d LEFT JOIN s USING (rule_id, sequence)
"""


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def load_run(store: Store, output: str, progress=None) -> int:
    """Load the Spark output folder `output` (summary.json, findings/, detections/) as a new
    run; returns
    its run_id. Loading the same output twice is an InputError naming the run."""
    folder = Path(output)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise InputError("no summary.json: not the output folder of `pamcorr spark-correlate`",
                         str(folder))
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        policy, started = summary["policy"], summary["started"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable summary: {exc}", str(summary_path)) from None
    files = sorted(str(p) for p in (folder / "findings").rglob("*.parquet"))
    detected = sorted(str(p) for p in (folder / "detections").rglob("*.parquet"))
    loaded = store.query(LOADED_SQL, [str(folder.resolve()), started])
    if loaded:
        raise InputError(f"already loaded as run {loaded[0][0]}", str(folder))
    connector = GenericConnector()
    if files:
        # Spark's timestamps are UTC instants; an INT96 ts reads back zone-less: UTC it is
        ingest(store, connector, "activity", files, Options(tz="UTC"), progress=progress)
    con = store.con
    with store.transaction():
        run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchone()[0]
        parameters = {"engine": "spark", "loaded_from": str(folder.resolve()),
                      "spark_started": started, "master": summary.get("master"),
                      "input": summary.get("input"), **policy}
        con.execute("INSERT INTO runs (run_id, started, finished, period_start, period_end, "
                    "grace_s, lookaround_s, parameters, tool_version) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [run_id, _when(started), _when(summary.get("finished")),
                     _when(summary.get("period_start")), _when(summary.get("period_end")),
                     policy["grace_s"], policy["lookaround_s"], json.dumps(parameters),
                     summary.get("tool_version", "?")])
        if files:
            con.execute(INSERT_FINDINGS_SQL, {"run_id": run_id, "files": files,
                                              "source": connector.name})
        if summary.get("exceptions"):
            con.executemany(EXCEPTION_ROW_SQL, [
                [run_id, x["n"], x["name"], x["account"], x["target"], x["verdict"],
                 x["reason"], x["accepted_by"], _when(x["expires"]), x["expired"],
                 x["findings"]] for x in summary["exceptions"]])
            if files:
                con.execute(INSERT_COVERED_SQL, {"run_id": run_id, "files": files,
                                                 "source": connector.name})
        for c in summary.get("criticality") or []:
            con.execute(CRITICALITY_ROW_SQL, [run_id, c["pattern"], c["level"],
                                              c["specificity"]])
        if files and detected:
            con.execute(INSERT_DETECTIONS_SQL, {"run_id": run_id, "files": detected,
                                                "source": connector.name})
        if summary.get("detections"):
            _record_rules(con, run_id, summary["detections"].get("rule_dirs") or [])
        record_loaded_groups(con, run_id)     # the gap report's groups (schema 066)
    return run_id


def _record_rules(con, run_id: int, rule_dirs: list[str]) -> None:
    """The run's detection_rules rows, from the rule folders the Spark run used (read here)."""
    from correlate.detect.run import cached_rules
    con.executemany(
        "INSERT INTO detection_rules VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [[run_id, r.id, r.title, r.cls, r.severity, list(r.attack), r.description,
          r.sequence.get("type", "event"), list(r.sequence.get("rules", [])), r.path,
          r.sha256] for r in cached_rules(tuple(rule_dirs))])
