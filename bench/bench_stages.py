"""correlate's stages and statements in CPU seconds, on a store you can spare.

    cp /work/perfdata/corr7.duckdb /tmp/copy.duckdb      # correlate adds a run to it
    python bench/bench_stages.py /tmp/copy.duckdb [N]

Runs `correlate` on the store with `timings=` and times every statement of its connection in
CPU seconds of this process (DuckDB's threads included) and wall seconds; prints the stages
and the N (25) statements that took the most CPU. On a machine shared with other work, compare
CPU seconds of runs made back to back on copies of the same store, not wall time.
"""

from __future__ import annotations

import json
import os
import sys
import time

from correlate.engine import correlate
from correlate.store import Store
from statement_times import CPU, WALL, Timed


def main(db: str, top: int = 25) -> None:
    with Store(db) as store:
        store.con = Timed(store.con)
        stages: dict[str, float] = {}
        load = os.getloadavg()[0]
        c, w = time.process_time(), time.perf_counter()
        run = correlate(store, timings=stages)
        print(json.dumps({"run": run, "cpu_s": round(time.process_time() - c, 2),
                          "wall_s": round(time.perf_counter() - w, 2),
                          "load_before_after": [round(load, 1), round(os.getloadavg()[0], 1)],
                          "stages_wall_s": {k: round(v, 2) for k, v in stages.items()}}))
    for key, cpu in CPU.most_common(top):
        print(f"{cpu:6.2f} cpu {WALL[key]:6.2f} wall  {key}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
