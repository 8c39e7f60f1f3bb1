"""The Spark engine: the embedded verdict SQL run inside Spark tasks, one (account, target)
key group per task, reference data broadcast (docs/scale.md has the design and figures).

Input: a folder or URI holding one folder of Parquet per kind (activity/, approvals/, tickets/,
ticket_history/, identities/, targets/) in the generic contract's columns. The small kinds are
ingested on the driver by the embedded generic connector (same checks, same quarantine) and
broadcast as Arrow tables; activity is read by Spark, split by (account, target) key, with hot
keys salted over several tasks, and judged by correlate/spark_task.py in each task.
A second pass splits the actions by target (every shipped sequence rule groups by it) and
runs the embedded correlate() with detections on in each task.
With an OCSF dataset (`ocsf_uri`), the activity comes from correlate/spark_ocsf.py instead: the
tasks map whole OCSF files with the embedded connector first.
Output: findings/ and detections/ (Parquet, partitioned by day), quarantine/ (Parquet) and
summary.json (with the config's exceptions, their counts, and criticality, for load-run).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import duckdb

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate import __version__
from correlate.clock import now_utc
from correlate.engine import Policy
from correlate.errors import InputError
from correlate.exceptions import TargetCriticality, VerdictException
from correlate.ingest import expand_paths, ingest
from correlate.detect.run import DetectionSettings, cached_rules
from correlate.spark_task import (
    ACTIVITY_COLUMNS, DETECTION_SCHEMA, OUTPUT_SCHEMA, detect_actions, judge_actions,
    reference_tables,
)
from correlate.store import Store

REFERENCE_KINDS = ("identities", "targets", "approvals", "tickets", "ticket_history")
ROWS_PER_TASK = 2_000_000     # a task's actions: ~0.5 GiB of DuckDB memory at most (measured)
HOT_KEY_ROWS = 500_000        # a key with more actions than this is salted over several tasks
BROADCAST_SHARED_IDS = 1_000_000   # event_ids under several keys: broadcast up to this many
SHARED_KEY = "\x00shared"     # the pseudo-account routing such an id's rows (no real key has it)


def is_local(uri: str) -> bool:
    """A path on this machine (no scheme, or file:)."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def _local(uri: str) -> Path:
    return Path(urlparse(uri).path if uri.startswith("file:") else uri)


def spark_session(master: str = "local[2]", app: str = "pamcorr", ui: bool = False):
    """A SparkSession in UTC with Arrow on; small shuffles in local mode, the UI off unless
    `ui` (bench/bench_spark.py reads shuffle sizes from it)."""
    from pyspark.sql import SparkSession
    builder = SparkSession.builder
    if "PYSPARK_GATEWAY_PORT" not in os.environ:     # spark-submit has set the master
        builder = builder.master(master)
    builder = (builder.appName(app)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               # UTC instants as such (the default, INT96, reads back zone-less elsewhere)
               .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
               .config("spark.ui.enabled", "true" if ui else "false")
               .config("spark.ui.showConsoleProgress", "false"))
    if master.startswith("local") and "PYSPARK_GATEWAY_PORT" not in os.environ:
        # tasks run in this very Python (its pamcorr, duckdb and pyarrow), not the PATH's python3
        builder = builder.config("spark.sql.shuffle.partitions", "4")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return builder.getOrCreate()


def _reference_store(spark, input_uri: str, tmp: Path, options: Options,
                     store_path: str | None) -> tuple[dict[str, bytes], dict]:
    """(broadcastable tables, counts per kind): from an existing store, or the input's kinds."""
    if store_path:
        with Store(store_path, read_only=True) as store:
            return reference_tables(store.con), {}
    counts = {}
    with Store(str(tmp / "reference.duckdb")) as store:
        for kind in REFERENCE_KINDS:
            paths = _kind_files(spark, input_uri, kind, tmp)
            if not paths:
                continue
            results = ingest(store, GenericConnector(), kind, paths, options)
            counts[kind] = {k: sum(getattr(r, k) for r in results)
                            for k in ("read", "accepted", "quarantined", "duplicates")}
        return reference_tables(store.con), counts


def _kind_files(spark, input_uri: str, kind: str, tmp: Path) -> list[str]:
    """The files of one reference kind, local paths (a remote folder is read by Spark once)."""
    uri = input_uri.rstrip("/") + "/" + kind
    if is_local(input_uri):
        folder = _local(uri)
        if not folder.exists():
            return []
        return [str(p) for p in expand_paths([str(folder)]) if not p.name.startswith("_")]
    try:
        frame = spark.read.parquet(uri).toPandas()
    except Exception as exc:       # a missing folder: AnalysisException (PATH_NOT_FOUND)
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            return []
        raise
    path = tmp / f"{kind}.parquet"
    con = duckdb.connect()
    con.register("frame", frame)
    con.execute(f"COPY frame TO '{path}' (FORMAT parquet)")
    con.close()
    return [str(path)]


def _activity(spark, input_uri: str):
    """The activity folder as a DataFrame of the contract's columns and where each row was
    read (file, row); a column the files lack is NULL."""
    from pyspark.sql import functions as F
    uri = input_uri.rstrip("/") + "/activity"
    if is_local(input_uri) and not _local(uri).exists():
        raise InputError("no activity/ folder (Parquet in the generic contract's columns)",
                         uri)
    df = spark.read.parquet(uri).select("*", "_metadata.file_path", "_metadata.row_index")
    names = {c.lower(): c for c in df.columns}
    for req in ("ts", "account", "target"):
        if req not in names:
            raise InputError(f"activity has no column {req} (columns: {', '.join(df.columns)})",
                             uri)
    # a UTC timestamp stays one (the task writes it to Parquet as such); anything else is text,
    # a zone-less timestamp_ntz included (it needs --tz, as in the embedded engine)
    cols = [(F.col(names[c]) if c in names else F.lit(None)).cast(
        "timestamp" if c == "ts" and dict(df.dtypes)[names[c]] == "timestamp"
        else "string").alias(c) for c in ACTIVITY_COLUMNS]
    return df.select(*cols, F.col("file_path").alias("source_file"),
                     F.col("row_index").alias("source_row"))


def _shared_ids(keyed):
    """The event_ids that occur under more than one (account, target) key, as a DataFrame of
    their 64-bit hashes `s_eid` (one aggregation over the ids' hashes: 8 bytes an id through
    the shuffle), and how many there are. Two ids with one hash are routed together, which
    changes no answer (any split gives the embedded one while each id's copies meet)."""
    from pyspark.sql import functions as F
    key = F.struct("k_acc", "k_tgt")
    shared = (keyed.where(F.col("k_eid").isNotNull()).groupBy(F.col("k_hash").alias("s_eid"))
              .agg(F.min(key).alias("lo"), F.max(key).alias("hi"))
              .where(~F.col("lo").eqNullSafe(F.col("hi"))).select("s_eid").cache())
    return shared, shared.count()


def _split(df, rows_per_task: int, hot_rows: int):
    """Repartition by (account, target) key; a key with more than `hot_rows` actions is split
    over several tasks by a salt from the record's id, so that both copies of a repeated
    event_id meet in one task. An event_id found under more than one key (`_shared_ids`) has
    all its rows sent to one task by a pseudo-key of that id, where the generic ingest keeps
    the copy the embedded engine keeps. Returns (DataFrame, tasks, hot keys, actions read,
    (the shared ids, cached until the split is written, and how many))."""
    from pyspark.sql import functions as F
    acc, tgt = F.lower(F.trim("account")), F.lower(F.trim("target"))
    keyed = (df.withColumn("k_acc", acc).withColumn("k_tgt", tgt)
             # the event_id as the generic ingest reads it (nonblank_sql); a record without
             # one has a content id, which includes its key
             .withColumn("k_eid", F.nullif(F.trim(F.col("event_id")), F.lit("")))
             .withColumn("k_hash", F.when(F.col("k_eid").isNotNull(), F.xxhash64("k_eid"))))
    shared, n_shared = _shared_ids(keyed)
    counts = keyed.groupBy("k_acc", "k_tgt").count().cache()
    total = counts.agg(F.sum("count")).collect()[0][0] or 0
    hot = counts.where(F.col("count") > hot_rows).collect()
    counts.unpersist()
    buckets = [(r["k_acc"], r["k_tgt"], math.ceil(r["count"] / hot_rows)) for r in hot]
    ident = F.coalesce(F.nullif(F.trim("event_id"), F.lit("")),
                       F.concat_ws("\x1f", *[F.coalesce(F.col(c).cast("string"), F.lit(""))
                                              for c in ACTIVITY_COLUMNS]))
    if buckets:
        spark = df.sparkSession
        salts = spark.createDataFrame(buckets, "k_acc string, k_tgt string, buckets int")
        keyed = keyed.join(F.broadcast(salts), ["k_acc", "k_tgt"], "left")
        keyed = keyed.withColumn("salt", F.pmod(F.xxhash64(ident),
                                                F.coalesce("buckets", F.lit(1))))
    else:
        keyed = keyed.withColumn("salt", F.lit(0).cast("long"))
    if n_shared:
        ids = F.broadcast(shared) if n_shared <= BROADCAST_SHARED_IDS else shared
        keyed = keyed.join(ids, keyed["k_hash"] == ids["s_eid"], "left")
        moved = F.col("s_eid").isNotNull()
        keyed = (keyed.withColumn("k_acc", F.when(moved, F.lit(SHARED_KEY))
                                  .otherwise(F.col("k_acc")))
                 .withColumn("k_tgt", F.when(moved, F.col("s_eid").cast("string"))
                             .otherwise(F.col("k_tgt")))
                 .withColumn("salt", F.when(moved, F.lit(0)).otherwise(F.col("salt"))))
    tasks = max(1, math.ceil(total / rows_per_task),
                df.sparkSession.sparkContext.defaultParallelism)
    split = keyed.repartition(tasks, "k_acc", "k_tgt", "salt")
    if not n_shared:
        shared.unpersist()
    return (split.select(*ACTIVITY_COLUMNS, "source_file", "source_row"), tasks, buckets, total,
            (shared, n_shared))


# The columns a detection pass may split the actions by, in order of preference; each is lowered
# and trimmed, which groups no less than the lower() the sequences group by (detect/run.py).
SPLIT_COLUMNS = ("target", "account", "actor", "session_id")


def detection_passes(settings: DetectionSettings) -> dict[str | None, tuple[str, ...]]:
    """{split column: the sequence rules whose rows that pass keeps}. A sequence rule goes to
    the pass split by the first of SPLIT_COLUMNS it groups by, so that each group it forms
    lies in one task ([account, target] and [actor, target] by target, [account] by account);
    a rule grouping by none of them to the pass of one task (None). The event rules' rows
    come from the `target` pass (an event rule reads one action: any split serves)."""
    passes: dict[str | None, list[str]] = {"target": []}
    for rule in cached_rules(tuple(settings.rule_dirs)):
        if rule.is_sequence:
            groups = set(rule.sequence.get("group_by") or ())
            key = next((c for c in SPLIT_COLUMNS if c in groups), None)
            passes.setdefault(key, []).append(rule.id)
    return {k: tuple(v) for k, v in passes.items()}


def _detections(spark, df, shared, tasks: int, start, end, policy: Policy, tz,
                settings: DetectionSettings, output_uri: str) -> dict:
    """The detection passes: the actions split by each pass's column (never salted: a sequence
    needs all of its group in one task), each task the embedded correlate() with detections
    on, keeping its pass's rows; writes detections/ (Parquet by day). Returns the summary's
    `detections` entry."""
    from functools import reduce

    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema
    passes = detection_passes(settings)
    events = tuple(r.id for r in cached_rules(tuple(settings.rule_dirs)) if not r.is_sequence)

    def task(keep):
        def detect(batches):
            import pyarrow as pa
            batches = list(batches)           # a task the split left empty gets none
            table = pa.Table.from_batches(batches) if batches else None
            if table is not None and table.num_rows:
                yield from detect_actions(shared.value, table, start, end, policy, tz,
                                          settings, keep).to_batches()
        return detect

    frames = []
    for key, sequences in passes.items():
        keep = sequences + (events if key == "target" else ())
        split = df.repartition(tasks, F.lower(F.trim(key))) if key else df.repartition(1)
        frames.append(split.mapInArrow(task(keep), from_arrow_schema(DETECTION_SCHEMA)))
    folder = output_uri.rstrip("/") + "/detections"
    (reduce(lambda x, y: x.unionByName(y), frames).withColumn("day", F.to_date("ts"))
     .write.mode("overwrite").partitionBy("day").parquet(folder))
    counts = spark.read.parquet(folder).groupBy("review").count().collect()
    return {"passes": {str(k): list(v) for k, v in passes.items()}, "tasks_per_pass": tasks,
            "rule_dirs": list(settings.rule_dirs),
            "reviews": {r["review"]: r["count"] for r in counts}}


def run_spark(spark, input_uri: str, output_uri: str, start: datetime | None = None,
              end: datetime | None = None, policy: Policy = Policy(), tz: str | None = None,
              store_path: str | None = None, rows_per_task: int = ROWS_PER_TASK,
              hot_rows: int = HOT_KEY_ROWS,
              detections: DetectionSettings = DetectionSettings(),
              exceptions: tuple[VerdictException, ...] = (),
              criticality: tuple[TargetCriticality, ...] = (),
              ocsf_uri: str | None = None) -> dict:
    """Judge the input's activity on Spark, then run the detections; write findings/,
    detections/, quarantine/ and summary.json under `output_uri`. Returns the summary.
    `exceptions` mark the findings they cover in each task (findings' `exception`), expiry
    decided by this run's start; they and `criticality` go into the summary, whence load-run
    stores them with the run as the embedded engine does. `ocsf_uri`: take the activity from
    this OCSF dataset (correlate/spark_ocsf.py) instead of the input's activity/ folder."""
    from pyspark.sql import functions as F
    started = now_utc()
    options = Options(tz=tz)
    with tempfile.TemporaryDirectory(prefix="pamcorr-spark-") as tmp:
        reference, ref_counts = _reference_store(spark, input_uri, Path(tmp), options,
                                                 store_path)
    shared = spark.sparkContext.broadcast(reference)

    def judge(batches):
        import pyarrow as pa
        batches = list(batches)               # a task the split left empty gets none
        table = pa.Table.from_batches(batches) if batches else None
        if table is not None and table.num_rows:
            yield from judge_actions(shared.value, table, start, end, policy, tz, exceptions,
                                     started).to_batches()

    found, mapped, early = None, None, []
    if ocsf_uri:
        from correlate.spark_ocsf import ocsf_activity
        activity_df, early, mapped = ocsf_activity(spark, ocsf_uri,
                                                   output_uri.rstrip("/") + "/_ocsf", tz)
    else:
        activity_df = _activity(spark, input_uri)
    split, tasks, hot, total, (shared_df, shared_ids) = _split(activity_df, rows_per_task,
                                                               hot_rows)
    from pyspark.sql.pandas.types import from_arrow_schema
    # The tasks judge once, into a staging folder partitioned by record and day, whose
    # record=finding/ folder becomes findings/ by a rename; quarantine and the tallies are read
    # back from the rest. (Reading the findings back to write them by day took 110 of 370
    # core-s at 1e6; persist() + three actions re-ran the judging when the cache did not hold.)
    staging = output_uri.rstrip("/") + "/_staging"
    try:
        (split.mapInArrow(judge, from_arrow_schema(OUTPUT_SCHEMA))
         .withColumn("day", F.to_date("ts"))
         .write.mode("overwrite").partitionBy("record", "day").parquet(staging))
        findings_uri = output_uri.rstrip("/") + "/findings"
        if not _move(spark, staging + "/record=finding", findings_uri):
            spark.createDataFrame([], from_arrow_schema(OUTPUT_SCHEMA)).drop("record").withColumn(
                "day", F.to_date("ts")).write.mode("overwrite").partitionBy("day").parquet(
                findings_uri)
        staged = from_arrow_schema(OUTPUT_SCHEMA)
        out = spark.read.schema(staged.add("day", "date")).parquet(staging)  # none: empty
        notes = out.where(F.col("record") == "quarantine").select(
            F.from_json("note", "file string, row long, reason string, raw string").alias("q"))
        if early:      # what the OCSF mapping quarantined first
            notes = spark.createDataFrame(
                [{"q": q} for q in early],
                "q struct<file string, row long, reason string, raw string>").unionByName(notes)
        notes.select("q.*").write.mode("overwrite").parquet(
            output_uri.rstrip("/") + "/quarantine")
        tallies = [json.loads(r["note"]) for r in
                   out.where(F.col("record") == "tally").select("note").collect()]
        if detections.enabled:
            found = _detections(spark, activity_df, shared, tasks, start, end, policy, tz,
                                detections, output_uri)
    finally:
        shared.unpersist()
        shared_df.unpersist()
        _delete(spark, staging)
        if ocsf_uri:
            _delete(spark, output_uri.rstrip("/") + "/_ocsf")
    activity = {k: sum(t[k] for t in tallies)
                for k in ("read", "accepted", "quarantined", "duplicates", "judged")}
    if mapped:      # OCSF: records read are the files' records, some ignored or dropped first
        activity = {**activity, "read": mapped["read"], "ignored": mapped["ignored"],
                    "quarantined": activity["quarantined"] + mapped["quarantined"],
                    "duplicates": activity["duplicates"] + mapped["duplicates"]}
    totals = {}
    for tally in tallies:                    # each task counted its own verdicts
        for key, n in tally["verdicts"].items():
            totals[key] = totals.get(key, 0) + n
    verdicts = [{"verdict": k.split(" ")[0], "status": k.split(" ")[1], "count": n}
                for k, n in sorted(totals.items())]
    accepted = [{"n": i, "name": x.name, "account": x.account, "target": x.target,
                 "verdict": x.verdict, "reason": x.reason, "accepted_by": x.accepted_by,
                 "expires": x.expires.isoformat(), "expired": x.expires <= started,
                 "findings": sum(t.get("exceptions", {}).get(str(i), 0) for t in tallies)}
                for i, x in enumerate(exceptions)]
    summary = {
        "engine": "spark", "master": spark.sparkContext.master, "input": input_uri,
        "output": output_uri, "tool_version": __version__, "ocsf": ocsf_uri,
        "started": started.isoformat(), "finished": now_utc().isoformat(),
        "period_start": start.isoformat() if start else None,
        "period_end": end.isoformat() if end else None,
        "policy": {"grace_s": policy.grace_s, "lookaround_s": policy.lookaround_s,
                   "change_window": policy.change_window},
        "tz": tz, "reference_store": store_path, "reference": ref_counts,
        "broadcast_bytes": sum(len(v) for v in reference.values()),
        "activity": activity, "activity_rows_seen": total, "tasks": tasks,
        "salted_keys": [{"account": a, "target": t, "tasks": b} for a, t, b in hot],
        "event_ids_under_several_keys": shared_ids,
        "verdicts": verdicts, "detections": found, "exceptions": accepted,
        "criticality": [{"pattern": c.pattern, "level": c.level,
                         "specificity": c.specificity} for c in criticality],
    }
    _write_text(spark, output_uri.rstrip("/") + "/summary.json",
                json.dumps(summary, indent=2, default=str))
    return summary


def _write_text(spark, uri: str, text: str) -> None:
    """A small file at `uri`: directly when local, through Hadoop's FileSystem otherwise."""
    if is_local(uri):
        _local(uri).write_text(text, encoding="utf-8")
        return
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def _move(spark, src: str, dst: str) -> bool:
    """Rename the folder `src` to `dst` (replacing it): os.replace when local, Hadoop's
    FileSystem.rename otherwise. False when `src` does not exist."""
    _delete(spark, dst)
    if is_local(src):
        if not _local(src).exists():
            return False
        os.replace(_local(src), _local(dst))
        return True
    jvm = spark.sparkContext._jvm
    source = jvm.org.apache.hadoop.fs.Path(src)
    fs = source.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(fs.exists(source) and fs.rename(source, jvm.org.apache.hadoop.fs.Path(dst)))


def _delete(spark, uri: str) -> None:
    """Remove a folder: directly when local, through Hadoop's FileSystem otherwise."""
    if is_local(uri):
        shutil.rmtree(_local(uri), ignore_errors=True)
        return
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


def clear_output(output_uri: str) -> None:
    """Remove a local output folder's earlier findings (Spark overwrites remote ones)."""
    if is_local(output_uri):
        for name in ("findings", "detections", "quarantine", "summary.json"):
            target = _local(output_uri) / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
