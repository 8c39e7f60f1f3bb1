"""Benchmark: the approval hygiene checks (correlate/sql/hygiene.sql) on bench_core's data.

N activity rows and N/100 approvals (bench_core's shape: 1e7 actions, 1e5 approvals); every
approval gets a requester and an approver (one approval in 50 approved by its own requester, the
rest by one of 20 leads) and an approvers.csv lists the leads, so every check has work to do.
Each run is its own process: correlate with the checks (their seconds from the engine's timings)
and correlate without them (hygiene.sql emptied), both with peak RSS, so the checks' cost in time
and memory is the difference.
Usage: python bench/bench_hygiene.py [N ...]   (default 1000000; the issue's size is 10000000)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import INGEST, child, generate  # noqa: E402

# requester = the account; approver = lead<k>, or the requester itself for one in 50
SHAPE = """
import sys
from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.ingest import ingest
from correlate.store import Store
db, folder = sys.argv[1], sys.argv[2]
path = folder + "/approvers.csv"
with open(path, "w") as fh:
    fh.write("approver,scope,kinds\\n" + "".join(f"lead{k},web-prod-*,standard\\n" for k in range(20)))
with Store(db) as s:
    s.con.execute("UPDATE approvals SET requester = account, approver = CASE WHEN hash(approval_id) "
                  "% 50 = 0 THEN account ELSE 'lead' || (hash(approval_id) % 20) END")
    (r,) = ingest(s, GenericConnector(), "approvers", [path], Options())
    assert r.balanced
print("{}")
"""

CORRELATE = """
import resource, sys, time, json
import correlate.engine as engine
from correlate.store import Store
if sys.argv[2] == "off":
    engine.HYGIENE_STATEMENTS = []
timings = {}
t = time.perf_counter()
with Store(sys.argv[1]) as s:
    run = engine.correlate(s, timings=timings)
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = dict(s.query("SELECT check_id, count(*) FROM approval_checks WHERE run_id = ? "
                        "AND family = 'hygiene' GROUP BY 1", [run]))
print(json.dumps({"seconds": seconds, "rss_mib": rss, "hygiene_s": timings.get("hygiene"),
                  "rows": rows}))
"""


def main(sizes: list[int]) -> None:
    import os
    print(f"PAMCORR_MEMORY_LIMIT={os.environ.get('PAMCORR_MEMORY_LIMIT', '(DuckDB default)')}")
    print(f"{'N':>10} {'approvals':>9} {'checks s':>9} {'correlate s':>12} {'MiB with':>9} "
          f"{'without':>8} {'corr. s without':>16}")
    for n in sizes:
        folder = generate(n)
        db = folder / "hygiene.duckdb"
        for suffix in ("", ".wal"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        child(INGEST, str(db), str(folder))
        child(SHAPE, str(db), str(folder))
        on = child(CORRELATE, str(db), "on")
        off = child(CORRELATE, str(db), "off")
        print(f"{n:>10} {max(n // 100, 1):>9} {on['hygiene_s']:>9.2f} {on['seconds']:>12.2f} "
              f"{on['rss_mib']:>9.0f} {off['rss_mib']:>8.0f} {off['seconds']:>16.2f}")
        print(f"{'':>10} findings: {json.dumps(on['rows'], sort_keys=True)}")
        for suffix in ("", ".wal"):
            Path(str(db) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1_000_000])
