"""Benchmark: what finding the event_ids reused across (account, target) keys costs the Spark
split (spark_engine._split), against the split without it, on the same lake.

Usage: python bench/bench_spark_ids.py DATA_DIR [--master local[2]] [--reuse 0.01]
DATA_DIR: gen.py output (as bench/bench_spark.py). `--reuse`: the share of actions whose
event_id is set to another action's (the next one's), so that the ids recur under other keys.
Prints one JSON line, seconds the better of two runs: the per-key count alone, the id
aggregation, and the whole split written to Parquet without and with the routing (and the ids
found, the tasks).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_spark import make_lake  # noqa: E402
from correlate import spark_engine  # noqa: E402


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return round(time.perf_counter() - t, 2), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--reuse", type=float, default=0.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pamcorr-bench-ids-") as tmp:
        lake = Path(tmp) / "lake"
        n = make_lake(args.data, lake)
        if args.reuse:
            con = duckdb.connect()
            con.execute(f"""COPY (SELECT CASE WHEN hash(event_id) % 10000 < {args.reuse * 1e4}
                THEN 'A' || (substr(event_id, 2)::BIGINT + 1) ELSE event_id END AS event_id,
                * EXCLUDE (event_id) FROM '{lake}/activity/**/*.parquet')
                TO '{lake}/activity2' (FORMAT parquet, PER_THREAD_OUTPUT true)""")
            con.close()
        spark = spark_engine.spark_session(args.master, app="pamcorr-bench-ids")
        if args.reuse:
            import shutil
            shutil.rmtree(lake / "activity")
            (lake / "activity2").rename(lake / "activity")
        df = spark_engine._activity(spark, str(lake))
        from pyspark.sql import functions as F
        keyed = (df.withColumn("k_acc", F.lower(F.trim("account")))
                 .withColumn("k_tgt", F.lower(F.trim("target")))
                 .withColumn("k_eid", F.nullif(F.trim(F.col("event_id")), F.lit("")))
                 .withColumn("k_hash", F.when(F.col("k_eid").isNotNull(), F.xxhash64("k_eid"))))
        keyed.count()       # warm: the JVM's first scan is slower
        t_counts = t_ids = 1e9
        for _ in range(2):  # the better of two (the machine is shared)
            t, _ = _timed(lambda: keyed.groupBy("k_acc", "k_tgt").count().collect())
            t_counts = min(t, t_counts)
            t, (shared, n_shared) = _timed(lambda: spark_engine._shared_ids(keyed))
            t_ids = min(t, t_ids)
            shared.unpersist()

        def split(route: bool):
            real = spark_engine._shared_ids
            if not route:
                spark_engine._shared_ids = lambda k: (k.limit(0).select(
                    F.col("k_hash").alias("s_eid")).cache(), 0)
            try:
                out, tasks, _, _, (ids, _) = spark_engine._split(
                    df, spark_engine.ROWS_PER_TASK, spark_engine.HOT_KEY_ROWS)
                out.write.mode("overwrite").parquet(f"{tmp}/split")
                ids.unpersist()
                return tasks
            finally:
                spark_engine._shared_ids = real
        t_plain = t_routed = 1e9
        for _ in range(2):
            t, tasks = _timed(lambda: split(False))
            t_plain = min(t, t_plain)
            t, _ = _timed(lambda: split(True))
            t_routed = min(t, t_routed)
        spark.stop()
    print(json.dumps({"actions": n, "reuse": args.reuse, "master": args.master,
                      "ids_under_several_keys": n_shared, "tasks": tasks,
                      "key_count_s": t_counts, "id_aggregation_s": t_ids,
                      "split_written_without_routing_s": t_plain,
                      "split_written_with_routing_s": t_routed}))


if __name__ == "__main__":
    main()
