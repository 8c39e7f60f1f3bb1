"""Benchmark: the Spark engine (local[N]) against the embedded engine on the same lake, same run.

Data: the performance anchor's generator (/work/shared/perf-anchor/gen.py) output, turned into
a lake (activity/, approvals/, tickets/ as Parquet in the generic contract's columns).
Usage: python bench/bench_spark.py DATA_DIR [--master local[2]] [--out DIR] [--rows-per-task N]
       [--detections]   (both engines run the detections; default off: verdicts only)
Prints one JSON line per engine: seconds, seconds per 1e6 actions, and for Spark the shuffle
bytes written and read (from the Spark UI's REST API, switched on for this run only) and tasks.
Both engines also check they gave the same number of findings per verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.base import Options  # noqa: E402
from connectors.generic import GenericConnector  # noqa: E402
from correlate.detect.run import DetectionSettings  # noqa: E402
from correlate.engine import correlate  # noqa: E402
from correlate.ingest import ingest  # noqa: E402
from correlate.store import Store  # noqa: E402


def make_lake(data: Path, lake: Path) -> int:
    """The anchor's files as a lake; returns the number of actions."""
    if (lake / "activity").exists():
        return duckdb.sql(f"SELECT count(*) FROM '{lake}/activity/**/*.parquet'").fetchall()[0][0]
    for kind in ("activity", "approvals", "tickets"):
        (lake / kind).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # activity in 16 files, as a lake would hold it; the anchor's times are zone-less UTC:
    # typed TIMESTAMPTZ here (a zone-less time is quarantined without --tz)
    con.execute(f"""COPY (SELECT 'A' || action_id AS event_id, timezone('UTC', ts) AS ts,
        account, target,
        'command' AS action, command AS detail, session_id, (action_id % 16) AS part
        FROM '{data}/actions.parquet') TO '{lake}/activity' (FORMAT parquet,
        PARTITION_BY (part), WRITE_PARTITION_COLUMNS false)""")
    con.execute(f"""COPY (SELECT 'W' || window_id AS approval_id, account, target,
        timezone('UTC', start_ts) AS start, timezone('UTC', end_ts) AS "end",
        ticket_id AS ticket FROM '{data}/windows.parquet')
        TO '{lake}/approvals/w.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT ticket_id, CASE status WHEN 'pending' THEN 'requested'
        ELSE status END AS status, timezone('UTC', created) AS opened,
        timezone('UTC', resolved) AS closed
        FROM '{data}/tickets.parquet') TO '{lake}/tickets/t.parquet' (FORMAT parquet)""")
    n = con.execute(f"SELECT count(*) FROM '{data}/actions.parquet'").fetchone()[0]
    con.close()
    return n


def embedded(lake: Path, db: Path, detect: bool = False) -> tuple[float, dict]:
    started = time.perf_counter()
    with Store(str(db)) as store:
        for kind in ("approvals", "tickets", "activity"):
            files = sorted(str(p) for p in (lake / kind).rglob("*.parquet"))
            ingest(store, GenericConnector(), kind, files, Options())
        loaded = time.perf_counter()
        run_id = correlate(store, detections=DetectionSettings(enabled=detect))
        detections = store.scalar("SELECT count(*) FROM detections WHERE run_id = ?", [run_id])
        totals = dict(store.query("SELECT verdict, count(*) FROM findings WHERE run_id = ? "
                                  "GROUP BY 1", [run_id]))
        quarantined = store.scalar("SELECT count(*) FROM quarantine")
    end = time.perf_counter()
    return end - started, {"ingest_s": round(loaded - started, 1),
                           "correlate_s": round(end - loaded, 1), "quarantined": quarantined,
                           "verdicts": totals, "detections": detections}


def stage_figures(spark) -> tuple[int, int, list]:
    """(shuffle bytes written, read, per stage [name, tasks, executor run seconds]) over every
    stage of the application (Spark UI REST API)."""
    base = spark.sparkContext.uiWebUrl
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{base}/api/v1/applications/{app}/stages") as resp:
        stages = json.load(resp)
    per = [[s.get("name", "?")[:40], s.get("numTasks"), round(s.get("executorRunTime", 0) / 1000, 1)]
           for s in sorted(stages, key=lambda s: s.get("stageId", 0))]
    return (sum(s.get("shuffleWriteBytes", 0) for s in stages),
            sum(s.get("shuffleReadBytes", 0) for s in stages), per)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="gen.py output folder (actions.parquet, ...)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temp one)")
    ap.add_argument("--rows-per-task", type=int, default=None)
    ap.add_argument("--skip-embedded", action="store_true")
    ap.add_argument("--detections", action="store_true",
                    help="run the detections in both engines (Spark: the detection passes)")
    args = ap.parse_args()
    scratch = args.out or Path(tempfile.mkdtemp(prefix="pamcorr-bench-spark-"))
    lake = scratch / "lake"
    n = make_lake(args.data, lake)
    per = 1e6 / n
    if not args.skip_embedded:
        db = scratch / "embedded.duckdb"
        db.unlink(missing_ok=True)
        seconds, extra = embedded(lake, db, args.detections)
        print(json.dumps({"engine": "embedded", "actions": n, "seconds": round(seconds, 1),
                          "s_per_1e6": round(seconds * per, 2), **extra}), flush=True)
    from correlate.spark_engine import clear_output, run_spark, spark_session
    started = time.perf_counter()
    spark = spark_session(args.master, app="pamcorr-bench", ui=True)   # ui: shuffle figures
    spark.conf.set("spark.sql.shuffle.partitions", "8")
    session = time.perf_counter() - started
    out = scratch / "spark-out"
    clear_output(str(out))
    extra = {"rows_per_task": args.rows_per_task} if args.rows_per_task else {}
    started = time.perf_counter()
    summary = run_spark(spark, str(lake), str(out),
                        detections=DetectionSettings(enabled=args.detections), **extra)
    seconds = time.perf_counter() - started
    written, read, stages = stage_figures(spark)
    print(json.dumps({"engine": "spark", "master": args.master, "actions": n,
                      "session_s": round(session, 1), "seconds": round(seconds, 1),
                      "s_per_1e6": round(seconds * per, 2), "tasks": summary["tasks"],
                      "shuffle_write_bytes": written, "shuffle_read_bytes": read,
                      "shuffle_bytes_per_action": round(written / n, 1), **extra,
                      "verdicts": {v["verdict"]: v["count"] for v in summary["verdicts"]},
                      "detections": summary["detections"],
                      "stages": stages}),
          flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
