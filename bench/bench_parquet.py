"""Parquet activity input against DuckDB's own Parquet load, measured in the same run.

    python bench/bench_parquet.py ACTIVITY.jsonl [--keep-parquet PATH] [--runs N]

ACTIVITY.jsonl is a generic activity file (the perf anchor's `generic/activity.jsonl`). It is
converted once to Parquet in pamcorr's generic columns (all text, as to_generic.py writes them),
then, back to back and each in its own process: DuckDB's `CREATE TABLE AS SELECT * FROM
read_parquet(...)` into a fresh file (the floor: reading and writing the same rows), and
`pamcorr ingest generic --kind activity FILE.parquet` into a fresh store (the one-pass load with
its checks, redaction, ids and keys). Prints wall and CPU seconds of each and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ("{'event_id': 'VARCHAR', 'ts': 'VARCHAR', 'account': 'VARCHAR', 'target': 'VARCHAR', "
           "'action': 'VARCHAR', 'detail': 'VARCHAR', 'session_id': 'VARCHAR', 'actor': 'VARCHAR'}")

CONVERT = """
import duckdb, sys
src, dst, cols = sys.argv[1:4]
con = duckdb.connect()
con.execute("SET preserve_insertion_order = false")
con.execute("COPY (SELECT * FROM read_json(?, format='newline_delimited', columns=" + cols + ")) "
            "TO '" + dst.replace("'", "''") + "' (FORMAT parquet)", [src])
"""

FLOOR = """
import duckdb, sys
pq, db = sys.argv[1:3]
con = duckdb.connect(db)
con.execute("CREATE TABLE actions AS SELECT * FROM read_parquet(?)", [pq])
con.close()
"""


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of a child process."""
    cpu, wall = _cpu(), time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, text=True)
    return time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("activity")
    ap.add_argument("--keep-parquet", help="write (or reuse) the Parquet file here")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    py = sys.executable
    pamcorr = str(Path(py).with_name("pamcorr"))
    with tempfile.TemporaryDirectory(prefix="pamcorr-pq-") as tmp:
        pq = args.keep_parquet or os.path.join(tmp, "activity.parquet")
        if not os.path.exists(pq):
            timed([py, "-c", CONVERT, args.activity, pq, COLUMNS])
        out = []
        for run in range(args.runs):
            db1, db2 = os.path.join(tmp, f"floor{run}.duckdb"), os.path.join(tmp, f"store{run}.duckdb")
            floor = timed([py, "-c", FLOOR, pq, db1])
            mine = timed([pamcorr, "ingest", "generic", "--kind", "activity", "--db", db2, pq])
            out.append({"floor_s": round(floor[0], 2), "floor_cpu": round(floor[1], 2),
                        "pamcorr_s": round(mine[0], 2), "pamcorr_cpu": round(mine[1], 2),
                        "ratio_wall": round(mine[0] / floor[0], 2),
                        "ratio_cpu": round(mine[1] / floor[1], 2),
                        "load": round(os.getloadavg()[0], 2)})
            print(json.dumps(out[-1]), flush=True)
            for f in (db1, db2):
                os.remove(f)


if __name__ == "__main__":
    main()
