"""A run judged elsewhere (the Spark engine's output folder) loaded into the store as a run,
so that `findings`, `report gaps`, `scope` and `export` read it like any other.

The judged actions come in through the generic connector's Parquet reader (same checks and
de-duplication as `pamcorr ingest`); each finding is stored finished in findings_v1 (schema
045), joined to its action by (source, event_id).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.errors import InputError
from correlate.ingest import ingest
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


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def load_run(store: Store, output: str, progress=None) -> int:
    """Load the Spark output folder `output` (summary.json, findings/) as a new run; returns
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
    loaded = store.query(LOADED_SQL, [str(folder.resolve()), started])
    if loaded:
        raise InputError(f"already loaded as run {loaded[0][0]}", str(folder))
    connector = GenericConnector()
    if files:
        ingest(store, connector, "activity", files, Options(), progress=progress)
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
    return run_id
