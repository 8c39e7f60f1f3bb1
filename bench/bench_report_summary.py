"""Benchmark: the gap report's trend and source coverage, and a weekly bundle's scope pages.

Usage: python bench/bench_report_summary.py [N] [RUNS]   (default 1000000 8)
Generates N actions with bench_core's generator (bench/data/, reused), ingests them into a fresh
store, correlates 2026-W47 RUNS times, then times reports.trend.trend,
reports.source_coverage.source_coverage, reports.scope_pages.plan and write_pages.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core  # noqa: E402
from connectors.base import Options  # noqa: E402
from connectors.generic import GenericConnector  # noqa: E402
from correlate.engine import correlate  # noqa: E402
from correlate.ingest import ingest  # noqa: E402
from correlate.jobs import parse_week  # noqa: E402
from correlate.store import Store  # noqa: E402
from reports.scope_pages import plan, write_pages  # noqa: E402
from reports.source_coverage import source_coverage  # noqa: E402
from reports.trend import trend  # noqa: E402


def timed(label, fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    print(f"{label:>28}: {time.perf_counter() - t:7.2f} s", flush=True)
    return out


def main(n: int, runs: int) -> None:
    folder = bench_core.generate(n)
    work = Path(tempfile.mkdtemp(prefix="pamcorr-bench-"))
    try:
        with Store(str(work / "b.duckdb")) as s:
            for kind, name in (("tickets", "tickets.csv"), ("approvals", "approvals.csv"),
                               ("activity", "activity.jsonl")):
                list(ingest(s, GenericConnector(), kind, [str(folder / name)], Options()))
            week = parse_week("2026-W47")
            for _ in range(runs):
                run_id = correlate(s, week.start, week.end)
            run = s.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])[0]
            print(f"{n:,} actions, {s.scalar('SELECT count(*) FROM findings WHERE run_id = ?', [run_id]):,} "
                  f"in the week, {runs} run(s)")
            timed("trend", trend, s, run_id)
            timed("source coverage", source_coverage, s, run["period_start"], run["period_end"])
            links = timed("scope pages: plan", plan, s, run_id)
            pages = timed("scope pages: write", write_pages, s, work, links, run)
            size = sum(p.stat().st_size for p in pages)
            print(f"{'':>28}  {len(pages)} pages, {size / 2**20:.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [1_000_000, 8][len(args):]))
