"""OCSF input on Spark: each task maps whole OCSF files with the embedded connector
(connectors/ocsf.py, the one mapping), and the mapped actions go on to the Spark engine's
judging as generic-contract activity.

Spark reads the files as bytes (`binaryFile`, through Hadoop's FileSystem: local, s3a://,
abfss://); a task writes each under its own `k=v` folders (Security Lake's region=/accountId=/
eventDay=) and ingests it as `pamcorr ingest ocsf` does, so a record gets the same account,
target, action, event_id (a hash of the record when it has no metadata.uid) and quarantine
reason as in the embedded engine. Nothing here imports pyspark at module level.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import pyarrow as pa

from connectors.base import Options
from connectors.ocsf import OcsfConnector
from correlate.ingest import ingest
from correlate.store import Store

# The mapped actions of one file, in the generic contract's columns (spark_task.ACTIVITY_COLUMNS)
# and where each was read (the OCSF file and its row).
MAPPED_SQL = """
SELECT event_id, ts, account, target, action, detail, session_id, actor,
       NULL::VARCHAR AS approval_ref, outcome, $file AS source_file, line AS source_row
FROM activity WHERE ingest_id = $ingest_id
"""
QUARANTINED_SQL = "SELECT line, reason, raw FROM quarantine WHERE ingest_id = ?"
INGEST_ID_SQL = "SELECT max(ingest_id) FROM ingest_log"

MAPPED_TYPES = (
    ("event_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("account", pa.string()),
    ("target", pa.string()), ("action", pa.string()), ("detail", pa.string()),
    ("session_id", pa.string()), ("actor", pa.string()), ("approval_ref", pa.string()),
    ("outcome", pa.string()), ("source_file", pa.string()), ("source_row", pa.int64()))
# A task's output: mapped actions (record NULL), plus 'quarantine' rows and one 'tally' (JSON).
MAPPED_SCHEMA = pa.schema([*MAPPED_TYPES, ("record", pa.string()), ("note", pa.string())])


def local_copy(tmp: Path, uri: str, n: int) -> Path:
    """Where a task writes the file `uri`: its own folder under `tmp`, then the `k=v` folders
    of its path (the hive partitions the connector reads), then its name."""
    parts = PurePosixPath(uri.split("://", 1)[-1]).parts
    folder = tmp / f"f{n}"
    for part in parts[:-1]:
        if "=" in part:
            folder = folder / part
    return folder / parts[-1]


def map_ocsf_files(files: pa.Table, tz: str | None = None) -> pa.Table:
    """MAPPED_SCHEMA rows for the OCSF files of `files` (columns path, content), ingested in
    path order into one fresh in-memory store by the embedded OCSF connector."""
    order = sorted(range(files.num_rows), key=lambda i: files["path"][i].as_py())
    out, notes = [], []
    tally = {"read": 0, "accepted": 0, "ignored": 0, "quarantined": 0, "duplicates": 0}
    with tempfile.TemporaryDirectory(prefix="pamcorr-ocsf-") as tmp, \
            Store(":memory:") as store:
        for n, i in enumerate(order):
            uri = files["path"][i].as_py()
            if uri.startswith("file:"):        # a local file is named as the embedded run names it
                uri = unquote(urlparse(uri).path)
            path = local_copy(Path(tmp), uri, n)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files["content"][i].as_py())
            (result,) = ingest(store, OcsfConnector(), "auto", [str(path)], Options(tz=tz))
            for key in tally:
                tally[key] += getattr(result, key)
            ingest_id = store.con.execute(INGEST_ID_SQL).fetchall()[0][0]
            out.append(store.con.sql(MAPPED_SQL, params={"file": uri, "ingest_id": ingest_id})
                       .to_arrow_table())
            notes += [("quarantine", json.dumps({"file": uri, "row": line, "reason": why,
                                                 "raw": raw}))
                      for line, why, raw in store.con.execute(QUARANTINED_SQL, [ingest_id])
                      .fetchall()]
    notes.append(("tally", json.dumps(tally)))
    mapped = [t.cast(pa.schema(MAPPED_TYPES)) for t in out]
    n = sum(t.num_rows for t in mapped)
    actions = (pa.concat_tables(mapped) if mapped else pa.schema(MAPPED_TYPES).empty_table())
    actions = actions.append_column("record", pa.nulls(n, pa.string()))
    actions = actions.append_column("note", pa.nulls(n, pa.string()))
    extra = pa.table({**{name: pa.nulls(len(notes), kind) for name, kind in MAPPED_TYPES},
                      "record": pa.array([k for k, _ in notes], pa.string()),
                      "note": pa.array([v for _, v in notes], pa.string())})
    return pa.concat_tables([actions, extra.cast(MAPPED_SCHEMA)])


def ocsf_activity(spark, ocsf_uri: str, staging: str, tz: str | None):
    """The OCSF dataset at `ocsf_uri` mapped by the tasks, written once to `staging` (read by
    the judging and every detection pass). Returns (actions DataFrame in the generic columns
    plus source_file/source_row, quarantine rows as dicts, the summed tally)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    def task(batches):
        batches = list(batches)
        table = pa.Table.from_batches(batches) if batches else None
        if table is not None and table.num_rows:
            yield from map_ocsf_files(table, tz).to_batches()

    # every file under the folder (the k=v folders are kept in the tasks' copies, not read here)
    files = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
             .load(ocsf_uri).select("path", "content"))
    # one file a task at most (a Security Lake object is up to a few hundred MB of Parquet)
    count = files.count()
    (files.repartition(max(1, count), "path")
     .mapInArrow(task, from_arrow_schema(MAPPED_SCHEMA))
     .write.mode("overwrite").parquet(staging))
    out = spark.read.parquet(staging)
    notes = out.where(F.col("record").isNotNull()).select("record", "note").collect()
    quarantined = [json.loads(r["note"]) for r in notes if r["record"] == "quarantine"]
    tallies = [json.loads(r["note"]) for r in notes if r["record"] == "tally"]
    tally = {k: sum(t[k] for t in tallies)
             for k in ("read", "accepted", "ignored", "quarantined", "duplicates")}
    return out.where(F.col("record").isNull()).drop("record", "note"), quarantined, tally
