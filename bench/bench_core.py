"""Benchmark: N activity rows and N/100 approvals in the generic JSON-lines/CSV format.

Times ingest and correlate separately, each in its own process, with peak RSS.
Usage: python bench/bench_core.py [N ...]   (default 100000 1000000)
Set PAMCORR_MEMORY_LIMIT (e.g. 2GB) to cap DuckDB's memory; the children inherit it.
Files are generated with DuckDB into bench/data/ (ignored by git) and reused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

DATA = Path(__file__).resolve().parent / "data"

# Nine actions in ten fall near one of the approvals (same formulas as GEN_APPROVALS), so the
# verdict mix looks like a real week; one in ten is random.
GEN_ACTIVITY = """
COPY (
  SELECT 'e' || i AS event_id,
         strftime(CASE WHEN i % 10 = 0
                       THEN TIMESTAMP '2026-11-16' + to_seconds((hash(i) % 604800)::BIGINT)
                       ELSE s + to_seconds((hash(i * 5) % (dur + 900))::BIGINT - 300) END,
                  '%Y-%m-%dT%H:%M:%SZ') AS ts,
         CASE WHEN i % 10 = 0 THEN 'user' || (hash(i * 3) % $accounts)
              ELSE 'user' || (hash(j * 11) % $accounts) END AS account,
         CASE WHEN i % 10 = 0 THEN 'web-prod-' || lpad((hash(i * 7) % 150)::VARCHAR, 3, '0')
              WHEN j % 10 = 0 THEN 'web-prod-0' || lpad((hash(i * 7) % 100)::VARCHAR, 2, '0')
              ELSE 'web-prod-' || lpad((hash(j * 13) % 150)::VARCHAR, 3, '0') END AS target,
         'ssh.command' AS action, 'systemctl restart nginx --now' AS detail,
         's' || (i // 20) AS session_id, 'user' || (hash(i * 3) % $accounts) AS actor
  FROM (SELECT i, j, TIMESTAMP '2026-11-15' + to_seconds((hash(j) % 691200)::BIGINT) AS s,
               600 + (hash(j * 17) % 28800) AS dur
        FROM (SELECT i, hash(i) % $m AS j FROM range($n) t(i)))
) TO '{path}' (FORMAT JSON)
"""

GEN_APPROVALS = """
COPY (
  SELECT 'A' || i AS approval_id, 'user' || (hash(i * 11) % $accounts) AS account,
         CASE WHEN i % 10 = 0 THEN 'web-prod-0*' ELSE 'web-prod-' || lpad((hash(i * 13) % 150)::VARCHAR, 3, '0') END AS target,
         strftime(s, '%Y-%m-%dT%H:%M:%SZ') AS "start",
         strftime(s + to_seconds(600 + (hash(i * 17) % 28800)::BIGINT), '%Y-%m-%dT%H:%M:%SZ') AS "end",
         CASE WHEN i % 20 = 0 THEN '' ELSE 'CHG-' || (i % 5000) END AS ticket,
         '' AS requester, '' AS approver, CASE WHEN i % 97 = 0 THEN 'break_glass' ELSE 'standard' END AS kind,
         CASE WHEN i % 53 = 0 THEN 'denied' ELSE 'approved' END AS status, '' AS revoked_at
  FROM (SELECT i, TIMESTAMP '2026-11-15' + to_seconds((hash(i) % 691200)::BIGINT) AS s FROM range($m) t(i))
) TO '{path}' (FORMAT CSV, HEADER)
"""

GEN_TICKETS = """
COPY (
  SELECT 'CHG-' || i AS ticket_id, CASE WHEN i % 31 = 0 THEN 'cancelled' ELSE 'approved' END AS status,
         '2026-11-01T00:00:00Z' AS opened, '' AS closed, '' AS planned_start, '' AS planned_end, '' AS assignee
  FROM range(5000) t(i)
) TO '{path}' (FORMAT CSV, HEADER)
"""

INGEST = """
import resource, sys, time, json
from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.ingest import ingest
from correlate.store import Store
db, folder = sys.argv[1], sys.argv[2]
t = time.perf_counter()
with Store(db) as s:
    for kind, name in (("tickets", "tickets.csv"), ("approvals", "approvals.csv"), ("activity", "activity.jsonl")):
        (r,) = ingest(s, GenericConnector(), kind, [folder + "/" + name], Options())
        assert r.balanced
print(json.dumps({"seconds": time.perf_counter() - t, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CORRELATE = """
import resource, sys, time, json
from pathlib import Path
from correlate.engine import correlate
from correlate.store import Store
from reports.gaps import write_gap_report
t = time.perf_counter()
with Store(sys.argv[1]) as s:
    run = correlate(s)
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = s.scalar("SELECT count(*) FROM findings WHERE run_id = ?", [run])
    totals = dict(s.query("SELECT verdict, count(*) FROM findings WHERE run_id = ? GROUP BY 1", [run]))
    t = time.perf_counter()
    report = write_gap_report(s, Path(sys.argv[1] + ".html"), run)
    report_s = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rss_mib": rss, "findings": n, "totals": totals,
                  "report_s": report_s, "report_kib": report.stat().st_size / 1024}))
"""


def generate(n: int) -> Path:
    folder = DATA / f"n{n}"
    if (folder / "activity.jsonl").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    params = {"n": n, "m": max(n // 100, 1), "accounts": 500}
    con.execute(GEN_ACTIVITY.format(path=folder / "activity.jsonl"),
                {"n": n, "m": params["m"], "accounts": params["accounts"]})
    con.execute(GEN_APPROVALS.format(path=folder / "approvals.csv"),
                {"m": params["m"], "accounts": params["accounts"]})
    con.execute(GEN_TICKETS.format(path=folder / "tickets.csv"))
    return folder


def child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(sizes: list[int]) -> None:
    import os
    print(f"PAMCORR_MEMORY_LIMIT={os.environ.get('PAMCORR_MEMORY_LIMIT', '(DuckDB default)')}")
    print(f"{'N':>10} {'ingest s':>9} {'ingest MiB':>11} {'correlate s':>12} {'corr MiB':>9} {'total s':>8} {'rows/s':>10}")
    for n in sizes:
        folder = generate(n)
        db = folder / "bench.duckdb"
        for suffix in ("", ".wal"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        ing = child(INGEST, str(db), str(folder))
        cor = child(CORRELATE, str(db))
        assert cor["findings"] == n, cor
        total = ing["seconds"] + cor["seconds"]
        print(f"{n:>10} {ing['seconds']:>9.2f} {ing['rss_mib']:>11.0f} {cor['seconds']:>12.2f} "
              f"{cor['rss_mib']:>9.0f} {total:>8.2f} {n / total:>10.0f}")
        print(f"{'':>10} gap report {cor['report_s']:.2f} s, {cor['report_kib']:.0f} KiB; "
              f"verdicts: {json.dumps(cor['totals'], sort_keys=True)}")
        for suffix in ("", ".wal", ".html"):
            Path(str(db) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000])
