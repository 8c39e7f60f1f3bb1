"""The gap report's trend: actions per verdict over the last runs of a comparable period, counted
in SQL, laid out as sparkline coordinates here; the template only draws them."""

from __future__ import annotations

from dataclasses import dataclass, field

from correlate.findings import VERDICTS
from correlate.store import Store
from reports.run_groups import stored_runs

TREND_RUNS = 8          # points in the trend: this run and up to 7 before it
SPARK_WIDTH = 160
SPARK_HEIGHT = 28
SPARK_PAD = 3

# The runs comparable with $run_id, newest TREND_RUNS, oldest first: finished, not after it, of
# the same period length within 10 % (weeks with weeks, months with months), or like it without
# a period. A period judged twice counts once, by its newest run up to $run_id.
TREND_RUNS_SQL = """
WITH cur AS (SELECT period_start, period_end,
                    epoch(period_end - period_start) AS len FROM runs WHERE run_id = $run_id),
cand AS (
    SELECT r.run_id, r.period_start, r.period_end
    FROM runs r, cur
    WHERE (r.finished IS NOT NULL OR r.run_id = $run_id) AND r.run_id <= $run_id
      AND (r.period_start IS NULL) = (cur.period_start IS NULL)
      AND (r.period_end IS NULL) = (cur.period_end IS NULL)
      AND (cur.len IS NULL
           OR abs(epoch(r.period_end - r.period_start) - cur.len) <= 0.1 * cur.len)
      AND (cur.period_start IS NULL OR r.period_start <= cur.period_start)
    QUALIFY row_number() OVER (
        PARTITION BY coalesce(r.period_start::VARCHAR || '/' || r.period_end::VARCHAR,
                              'run ' || r.run_id::VARCHAR)
        ORDER BY r.run_id DESC) = 1
)
SELECT run_id, period_start, period_end FROM (
    SELECT * FROM cand ORDER BY period_start DESC NULLS LAST, run_id DESC LIMIT $limit
) ORDER BY period_start NULLS LAST, run_id
"""

# Actions per (run, verdict) for those runs; a verdict a run did not give, or a run that judged
# nothing, has no row here and counts 0. A run written before its groups (schema 066) is counted
# over its findings; the others are read from their groups.
TREND_COUNTS_SQL = """
SELECT run_id, verdict, count(*) AS n FROM findings
WHERE list_contains($runs, run_id) GROUP BY ALL
"""
TREND_GROUPS_SQL = """
SELECT run_id, verdict, sum(n)::BIGINT AS n FROM run_groups
WHERE list_contains($runs, run_id) GROUP BY ALL
"""


@dataclass
class Trend:
    """Runs (oldest first) and, per verdict seen in any of them, its counts and sparkline."""

    runs: list[dict] = field(default_factory=list)       # {run_id, period_start, period_end}
    series: list[dict] = field(default_factory=list)     # {verdict, status, counts, points, last}
    width: int = SPARK_WIDTH
    height: int = SPARK_HEIGHT

    @property
    def first_run(self) -> bool:
        """Only this run: no line to draw."""
        return len(self.runs) < 2


def _points(counts: list[int]) -> list[dict]:
    """Sparkline coordinates, each series scaled to its own largest count (0 sits on the floor)."""
    top = max(counts) or 1
    step = (SPARK_WIDTH - 2 * SPARK_PAD) / max(len(counts) - 1, 1)
    floor = SPARK_HEIGHT - SPARK_PAD
    return [{"x": round(SPARK_PAD + i * step, 1),
             "y": round(floor - n / top * (SPARK_HEIGHT - 2 * SPARK_PAD), 1), "n": n}
            for i, n in enumerate(counts)]


def trend(store: Store, run_id: int, limit: int = TREND_RUNS) -> Trend:
    """Actions per verdict in `run_id` and the comparable runs before it."""
    runs = store.query_dicts(TREND_RUNS_SQL, {"run_id": run_id, "limit": limit})
    ids = [r["run_id"] for r in runs]
    grouped = sorted(stored_runs(store) & set(ids))
    rows = store.query(TREND_COUNTS_SQL, {"runs": [r for r in ids if r not in grouped]})
    if grouped:
        rows += store.query(TREND_GROUPS_SQL, {"runs": grouped})
    by_key = {(r, v): n for r, v, n in rows}
    out = Trend(runs=runs)
    for verdict, status in VERDICTS.items():
        counts = [by_key.get((r, verdict), 0) for r in ids]
        if not any(counts):
            continue
        pts = _points(counts)
        out.series.append({"verdict": verdict, "status": status, "counts": counts,
                           "points": " ".join(f"{p['x']},{p['y']}" for p in pts),
                           "last": pts[-1]})
    # FAIL verdicts first, then WARN, PASS and INFO: what a reader looks for first
    order = {"FAIL": 0, "WARN": 1, "PASS": 2, "INFO": 3}
    out.series.sort(key=lambda s: order[s["status"]])
    return out
