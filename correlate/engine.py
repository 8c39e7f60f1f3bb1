"""Correlation: bind the period and policy, run verdicts.sql, record the run."""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime

import duckdb

from correlate import __version__
from correlate.clock import now_utc
from correlate.detect.run import DetectionSettings, run_detections
from correlate.errors import StoreError
from correlate.exceptions import TargetCriticality, VerdictException, record_exceptions
from correlate.hygiene import HygieneSettings
from correlate.run_groups import GROUP_STATEMENTS, MACROS, SCRATCH, group_params
from correlate.store import Store, read_sql

DEFAULT_GRACE_S = 300
DEFAULT_LOOKAROUND_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Policy:
    """What a run is judged by."""

    grace_s: int = DEFAULT_GRACE_S
    lookaround_s: int = DEFAULT_LOOKAROUND_S
    # The ticket's change window an action must fall in: "planned" (planned_start..planned_end)
    # or "actual" (work_start..work_end).
    change_window: str = "planned"

    def __post_init__(self):
        if self.change_window not in ("planned", "actual"):
            raise ValueError(f"change_window must be planned or actual, not {self.change_window!r}")


def _statements(sql: str) -> list[str]:
    parts, current = [], []
    for line in sql.splitlines():
        if line.strip() == ";":
            parts.append("\n".join(current))
            current = []
        else:
            current.append(line)
    parts.append("\n".join(current))
    # Drop whole-line comments so the parameter scan sees only SQL.
    parts = ["\n".join(l for l in p.splitlines() if not l.strip().startswith("--")) for p in parts]
    return [p for p in parts if p.strip()]


VERDICT_STATEMENTS = _statements(read_sql("verdicts.sql"))
STORE_STATEMENTS = _statements(read_sql("verdicts_store.sql"))
CHECK_STATEMENTS = _statements(read_sql("approval_checks.sql"))
HYGIENE_STATEMENTS = _statements(read_sql("hygiene.sql"))

_CLEANUP = ("ref_keys", "run_keys", "key_ident", "key_names", "ap", "glob_keys", "matched", "win",
            "ticket_points", "seg", "hits", "seg_used", "cand", "ticket_appr", "ticket_case",
            "cand_status",
            "judged", "best", "nearest", "win_end", "win_start",
            # approval hygiene (hygiene.sql)
            "hy_appr", "hy_wi", "hy_used", "hy_names", "hy_impl", "hy_approvers",
            "hy_auth", "hy_pat", "hy_expand", "hy_unused", "hy_uhost", "hy_beat", "hy_reported",
            "hy_unused_judged", "hy_chain", "hy_bg", "hy_patn", "hy_scope", "hy_touched",
            "hy_bypass_act", *SCRATCH)


def correlate(store: Store, start: datetime | None = None, end: datetime | None = None,
              policy: Policy = Policy(), parameters: dict | None = None,
              detections: DetectionSettings = DetectionSettings(),
              exceptions: tuple[VerdictException, ...] = (),
              criticality: tuple[TargetCriticality, ...] = (),
              hygiene: HygieneSettings = HygieneSettings(), timings: dict | None = None) -> int:
    """Judge every activity row with start <= ts < end (all when both None), mark the failing
    findings accepted exceptions cover, check the hygiene of the approvals starting in the
    period (hygiene.sql, docs/hygiene.md), then run the detections over the same actions
    (correlate/detect). Returns run_id. `timings`, when given, receives the seconds each stage
    took (_Laps)."""
    con = store.con
    params = {"start": start, "end": end, "grace": policy.grace_s,
              "lookaround": policy.lookaround_s,
              "actual_window": policy.change_window == "actual"}
    started = now_utc()
    lap = _Laps(timings)
    # The segment tables are connection-local scratch: build them outside the transaction,
    # where the planner sees their statistics (inside it, fresh tables planned as if empty
    # made some joins ten times slower). Only what a run stores is written in the transaction.
    # DuckDB checkpoints the temp catalog like a database once its writes pass
    # checkpoint_threshold, compressing scratch tables that are read once or twice and dropped
    # (at 1e7 one statement paid 0.7 CPU-s for it): the threshold is raised while only scratch
    # is written, and the scratch is dropped before the run's commit, which checkpoints the
    # store as before (docs/performance.md).
    threshold = con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0]
    try:
        con.execute("SET checkpoint_threshold = '1TB'")
        for statement in VERDICT_STATEMENTS:
            _run(con, statement, params)
        con.execute("SET checkpoint_threshold = ?", [threshold])
        lap("verdicts")
        with store.transaction():
            run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchone()[0]
            con.execute("INSERT INTO runs (run_id, started, period_start, period_end, grace_s, "
                        "lookaround_s, parameters, tool_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [run_id, started, start, end, policy.grace_s, policy.lookaround_s,
                         json.dumps({**asdict(policy), **(parameters or {}),
                                     "hygiene": asdict(hygiene)}, default=str),
                         __version__])
            params["run_id"] = run_id
            for statement in STORE_STATEMENTS:
                _run(con, statement, params)
            lap("store")
            for statement in CHECK_STATEMENTS:
                _run(con, statement, params)
            record_exceptions(con, run_id, started, exceptions, criticality)
            lap("checks")
            for statement in HYGIENE_STATEMENTS:
                _run(con, statement, {**params, **hygiene.params(), "now": started})
            lap("hygiene")
            run_detections(con, run_id, start, end, started, detections)
            lap("detections")
            # the gap report's groups and timeline bins (schemas 066, 068): after the detections,
            # which the bins mark
            with memory_capped(con, store.memory_limit is None and store.path != ":memory:"):
                for statement in GROUP_STATEMENTS:
                    _run(con, statement, {**params, **group_params(start, end)})
            lap("groups")
            _drop_scratch(con, threshold)
            con.execute("UPDATE runs SET finished = ? WHERE run_id = ?", [now_utc(), run_id])
        lap("commit")
    except duckdb.Error as exc:
        raise StoreError(str(exc)) from exc
    finally:
        _drop_scratch(con, threshold)
    return run_id


# The groups' join of the run's findings to activity (1e7 x 1e7 at 1e7 actions) came on top of
# the table blocks the earlier stages left cached: correlate's peak RSS went from 2.3 to 3.3 GiB
# at 1e7. Under this limit DuckDB evicts those blocks first (clean, read again if needed): peak
# 2.3 GiB. Only for a file store (an in-memory one has nowhere to spill) whose user set no
# limit (PAMCORR_MEMORY_LIMIT): theirs is never raised.
GROUPS_MEMORY_LIMIT = "2GB"


@contextmanager
def memory_capped(con, cap: bool):
    """Run the block under GROUPS_MEMORY_LIMIT (when `cap`: no limit was set), then back to
    DuckDB's default (RESET: the default shown as text is rounded)."""
    if not cap:
        yield
        return
    con.execute(f"SET memory_limit = '{GROUPS_MEMORY_LIMIT}'")
    try:
        yield
    finally:
        con.execute("RESET memory_limit")


def _drop_scratch(con, threshold: str) -> None:
    """Drop the run's scratch tables and put checkpoint_threshold back."""
    for name in _CLEANUP:
        con.execute(f"DROP TABLE IF EXISTS {name}")
    for name in MACROS:
        con.execute(f"DROP MACRO IF EXISTS {name}")
    con.execute("SET checkpoint_threshold = ?", [threshold])


class _Laps:
    """Seconds per stage into `timings` (when given): verdicts, store, checks, hygiene,
    detections, commit (bench/bench_anchor.py --profile prints them)."""

    def __init__(self, timings: dict | None):
        self.timings, self.last = timings, time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
        self.last = now


def _run(con, statement: str, params: dict) -> None:
    con.execute(statement, {k: v for k, v in params.items()
                            if re.search(rf"\${k}\b", statement)})
