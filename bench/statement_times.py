"""Times every statement a store's connection runs, by the first words of its SQL, in wall and
CPU seconds of this process (DuckDB's threads included); a result's fetches count toward its
statement (results stream in DuckDB 2). Used by bench_anchor.py (in its child processes) and
bench_stages.py."""

from __future__ import annotations

import collections
import re
import time

CPU, WALL = collections.Counter(), collections.Counter()


def _count(key: str, cpu: float, wall: float) -> None:
    CPU[key] += time.process_time() - cpu
    WALL[key] += time.perf_counter() - wall


class Fetched:
    def __init__(self, res, key):
        self._res, self._key = res, key

    def __getattr__(self, name):
        attr = getattr(self._res, name)
        if not name.startswith("fetch"):
            return attr

        def timed(*a, **k):
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return attr(*a, **k)
            finally:
                _count(self._key, cpu, wall)
        return timed


class Timed:
    def __init__(self, con):
        self._con = con

    def execute(self, sql, *args):
        cpu, wall = time.process_time(), time.perf_counter()
        out = self._con.execute(sql, *args)
        key = re.sub(r"\s+", " ", sql).strip()[:70]
        _count(key, cpu, wall)
        return Timed(out) if out is self._con else Fetched(out, key)

    def __getattr__(self, name):
        return getattr(self._con, name)


def profiled(store):
    """The store, its connection timed."""
    store.con = Timed(store.con)
    return store


def top(n: int = 12) -> list[tuple[str, float]]:
    """The n statements that took the most wall time (at least 0.05 s)."""
    return [(k, round(v, 2)) for k, v in WALL.most_common(n) if v >= 0.05]
