"""Benchmark: the evidence bundle (`pamcorr export`: findings and detections as CSV and JSON
lines, findings.ocsf.json, the gap report, index and manifest; what the weekly run writes but
weekly.json) over bench_detect's data (bench_core's N activity rows, N findings; 4 actions in
1000 are risky commands, so the run has detections and sequences).

Each step runs in its own process: wall time and peak RSS of that process. With --compare, the
bundle's findings.csv/jsonl are checked byte for byte against `pamcorr findings --format
csv|jsonl` (streamed through Python) and those are timed too; with --python, also the old
row-by-row Python writers (reports/export.py; minutes and GBs at 1e7).
Usage: python bench/bench_export.py [--compare] [--python] [N ...]   (default 1000000)
PAMCORR_MEMORY_LIMIT (e.g. 1GB) caps DuckDB's memory; the children inherit it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import INGEST, child  # noqa: E402
from bench_detect import generate  # noqa: E402   bench_core's rows, 4 in 1000 risky commands

CORRELATE = """
import sys, json
from correlate.engine import correlate
from correlate.store import Store
with Store(sys.argv[1]) as s:
    run = correlate(s)
    n = s.scalar("SELECT count(*) FROM findings WHERE run_id = ?", [run])
    d = s.scalar("SELECT count(*) FROM detections WHERE run_id = ?", [run])
print(json.dumps({"findings": n, "detections": d}))
"""

PYTHON_WRITERS = """
import resource, sys, time, json
from correlate import queries
from correlate.store import Store
from reports.export import WRITERS
t = time.perf_counter()
with Store(sys.argv[1], read_only=True) as s, open(sys.argv[3], "w", encoding="utf-8", newline="") as fh:
    WRITERS[sys.argv[2]](queries.findings(s), fh)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PAMCORR = str(Path(sys.executable).with_name("pamcorr"))


def timed(args: list[str], stdout=subprocess.DEVNULL) -> dict:
    """Wall time and peak RSS of one child process (its own rusage, from wait4)."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)}: exit {proc.returncode}")
    return {"seconds": time.perf_counter() - t, "rss_mib": usage.ru_maxrss / 1024}


def main(sizes: list[int], compare: bool, python: bool) -> None:
    print(f"PAMCORR_MEMORY_LIMIT={os.environ.get('PAMCORR_MEMORY_LIMIT', '(DuckDB default)')}")
    for n in sizes:
        folder = generate(n)
        db = folder / "export.duckdb"
        for suffix in ("", ".wal"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        child(INGEST, str(db), str(folder))
        counts = child(CORRELATE, str(db))
        print(f"N={n}: {counts['findings']} findings, {counts['detections']} detections")
        rows = []
        bundle = folder / "bundle"
        r = timed([PAMCORR, "export", "--db", str(db), "-o", str(bundle)])
        size = sum(p.stat().st_size for p in bundle.iterdir())
        rows.append(("pamcorr export (bundle)", r, size))
        for p in sorted(bundle.iterdir()):
            print(f"  {p.name:24} {p.stat().st_size / 2**20:>10.1f} MiB")
        for fmt in ("csv", "jsonl") if compare else ():
            out = folder / f"findings-stream.{fmt}"
            with open(out, "w") as fh:
                r = timed([PAMCORR, "findings", "--db", str(db), "--format", fmt], stdout=fh)
            rows.append((f"pamcorr findings --format {fmt}", r, out.stat().st_size))
            same = (bundle / f"findings.{fmt}").read_bytes() == out.read_bytes()
            print(f"  findings.{fmt}: bundle and stdout bytes {'identical' if same else 'DIFFER'}")
            out.unlink()
            if python:
                old = folder / f"findings-old.{fmt}"
                r = child(PYTHON_WRITERS, str(db), fmt, str(old))
                rows.append((f"Python writer ({fmt}, before)", r, old.stat().st_size))
                same = old.read_bytes() == (bundle / f"findings.{fmt}").read_bytes()
                print(f"  findings.{fmt}: SQL and Python bytes {'identical' if same else 'DIFFER'}")
                old.unlink()
        print(f"  {'step':38} {'seconds':>8} {'peak MiB':>9} {'MiB out':>8}")
        for name, r, size in rows:
            print(f"  {name:38} {r['seconds']:>8.2f} {r['rss_mib']:>9.0f} {size / 2**20:>8.1f}")
        for p in bundle.iterdir():
            p.unlink()
        bundle.rmdir()
        for suffix in ("", ".wal"):
            Path(str(db) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    flags = {a for a in args if a.startswith("--")}
    main([int(a) for a in args if not a.startswith("--")] or [1_000_000],
         "--compare" in flags, "--python" in flags)
