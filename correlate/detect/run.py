"""Run a run's detections: event rules in one scan, sequences, approval context, mutes.

Called by the engine after the verdicts of the run are stored, inside the same transaction:
every detection carries the verdict, approval and ticket of its action (the findings view).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from correlate.detect.rules import Rule, load_rules
from correlate.detect.sequences import sequence_sql
from correlate.store import drop_temp

# Rules run on the DISTINCT values of the columns they read, not on every action: commands,
# API calls and paths repeat, and a regex costs far more than a hash (1e6 bench actions:
# 3.9 s of rules on every row, 0.04 s to find the 5 distinct values). The matches then join
# back to the period's actions on those columns.
VALUES_SQL = """
CREATE OR REPLACE TEMP TABLE det_vals_{n} AS
SELECT DISTINCT {cols} FROM activity a
WHERE ($start IS NULL OR a.ts >= $start) AND ($end IS NULL OR a.ts < $end) AND ({views})
"""
VALUE_HITS_SQL = """
CREATE OR REPLACE TEMP TABLE det_val_hits_{n} AS
SELECT * FROM (SELECT {cols}, unnest({cases}) AS rule_id FROM det_vals_{n} a)
WHERE rule_id IS NOT NULL
"""
HITS_SQL = """
INSERT INTO det_hits
SELECT a.act_id, v.rule_id{carry} FROM activity a JOIN det_val_hits_{n} v ON {join}
WHERE ($start IS NULL OR a.ts >= $start) AND ($end IS NULL OR a.ts < $end)
"""
# det_hits carries the action's columns the sequences read (det_events below), taken in the
# same join: reading them back by a join of det_hits with activity cost more (1e7 bench: det_hits
# 0.2 -> 0.5 CPU-s, det_events 0.9 -> 0).
CARRIED = {"ts": ("a.ts", "TIMESTAMPTZ"), "account": ("lower(a.account)", "VARCHAR"),
           "target": ("lower(a.target)", "VARCHAR"), "session_id": ("a.session_id", "VARCHAR"),
           "actor": ("lower(a.actor)", "VARCHAR"), "detail": ("a.detail", "VARCHAR"),
           "source": ("a.source", "VARCHAR")}
EMPTY_HITS_SQL = ("CREATE OR REPLACE TEMP TABLE det_hits AS "
                  "SELECT NULL::BIGINT AS act_id, NULL::VARCHAR AS rule_id{carry} WHERE false")

# The run's actions taken after the approval they fall nearest to was revoked (findings of the
# run: out_of_window after that window's end, the window cut short by revoked_at). The
# `pamcorr/verdict` logsource reads them (views.py); kept small: only such actions.
JUDGED_SQL = """
CREATE OR REPLACE TEMP TABLE det_judged AS
SELECT f.act_id, f.verdict, f.approval_id, w.revoked_at
FROM findings f
JOIN approval_windows w ON w.source = f.approval_source AND w.approval_id = f.approval_id
WHERE f.run_id = $run_id AND f.verdict = 'out_of_window' AND f.gap_seconds > 0
  AND w.revoked_at IS NOT NULL AND w.revoked_at < w.end_ts
"""

# The run's findings of the actions some rule matched, read once (the findings view over all of
# a 1e7-action run is computed only for these; 1e7 bench: 3 s less per read).
FINDINGS_SQL = """
CREATE OR REPLACE TEMP TABLE det_f AS
SELECT act_id, status, approval_id, ticket_id FROM findings
WHERE run_id = $run_id AND act_id IN (SELECT act_id FROM det_hits)
"""

# The matches of the rules some sequence lists, with the columns the sequences read (det_hits
# carries them; approval_id from the finding). The columns after rule_id, act_id, ts are fixed
# (watch/sequences.py stores and adds rows by position); those no sequence reads are NULL.
# A view when nothing writes to it or joins for it (1e7 bench: 2e6 rows not copied).
EVENT_COLUMNS = ("account", "target", "session_id", "actor", "detail", "source", "approval_id")
EVENTS_SQL = """
CREATE TEMP {kind} det_events AS
SELECT h.rule_id, h.act_id, h.ts, {columns}
FROM det_hits h{findings}
WHERE h.rule_id IN ({members})
"""
EVENTS_FINDINGS = "\nLEFT JOIN det_f f ON f.act_id = h.act_id"

# A mute covers a detection when every pattern it sets matches (globs, case-insensitive) and it
# has not expired at the run's time; the first matching entry names the reason.
STATUS_SQL = """CASE WHEN f.status = 'FAIL' OR f.status IS NULL THEN 'FAIL' ELSE 'needs_review' END"""
INSERT_SQL = """
INSERT INTO detections
SELECT $run_id, d.act_id, d.rule_id, d.sequence_id, d.position,
       CASE WHEN m.reason IS NOT NULL THEN 'MUTED' ELSE {status} END,
       m.reason
FROM det_all d
JOIN activity a USING (act_id)
LEFT JOIN det_f f ON f.act_id = d.act_id
LEFT JOIN LATERAL (
    SELECT arg_min(x.reason, x.n) AS reason FROM det_mutes x
    WHERE lower(d.rule_id) GLOB lower(x.rule)
      AND (x.account IS NULL OR lower(a.account) GLOB lower(x.account))
      AND (x.target IS NULL OR lower(a.target) GLOB lower(x.target))
      AND (x.ticket IS NULL OR lower(f.ticket_id) GLOB lower(x.ticket))
      AND (x.expires IS NULL OR x.expires > $now)
) m ON true
""".format(status=STATUS_SQL)
# Without mutes nothing needs the action's account or target: no read of activity.
INSERT_UNMUTED_SQL = """
INSERT INTO detections
SELECT $run_id, d.act_id, d.rule_id, d.sequence_id, d.position, {status}, NULL
FROM det_all d LEFT JOIN det_f f ON f.act_id = d.act_id
""".format(status=STATUS_SQL)

# The rules the run ran, in one statement (executemany ran one INSERT per rule: 0.03-0.05 s a
# run, as much as the largest statements of the stage at 1e5).
RULES_SQL = """
INSERT INTO detection_rules
SELECT $run_id, unnest($rule_id::VARCHAR[]), unnest($title::VARCHAR[]),
       unnest($class::VARCHAR[]), unnest($severity::VARCHAR[]), unnest($attack::VARCHAR[][]),
       unnest($description::VARCHAR[]), unnest($kind::VARCHAR[]),
       unnest($members::VARCHAR[][]), unnest($path::VARCHAR[]), unnest($sha256::VARCHAR[])
"""

# The rules that matched something: a sequence none (temporal: not all) of whose rules did
# cannot match, and its SQL is not run (planning 12 sequences cost ~70 ms a watch batch).
PRESENT_SQL = "SELECT DISTINCT rule_id FROM det_events"


def _possible(seq: dict, present: set[str]) -> bool:
    members = set(seq["rules"])
    if seq["type"] in ("temporal", "temporal_ordered"):
        return members <= present
    return bool(members & present)


MUTE_COLUMNS = ("n", "rule", "account", "target", "ticket", "reason", "expires")


@dataclass(frozen=True)
class Mute:
    """An allow entry: the rule (glob) muted for an account, target or ticket pattern."""

    rule: str
    reason: str
    account: str | None = None
    target: str | None = None
    ticket: str | None = None
    expires: datetime | None = None


@dataclass(frozen=True)
class DetectionSettings:
    """Which rules run (shipped + user folders) and what is muted."""

    rule_dirs: tuple[str, ...] = ()
    mutes: tuple[Mute, ...] = ()
    enabled: bool = True


@lru_cache(maxsize=8)
def cached_rules(rule_dirs: tuple[str, ...]) -> tuple[Rule, ...]:
    return tuple(load_rules(rule_dirs))


_COLUMN = re.compile(r"\ba\.([a-z_]+)\b")          # a column the rules read (alias a)
_LITERAL = re.compile(r"'(?:[^']|'')*'")              # ... never inside a string literal


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _columns(rule: Rule) -> tuple[str, ...]:
    """The activity columns a rule reads (its view's filter and its condition)."""
    return tuple(sorted(set(_COLUMN.findall(_LITERAL.sub("''", f"{rule.view.where} {rule.sql}")))))


def hit_groups(rules: list[Rule], carry: tuple[str, ...] = ()
               ) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The statements that fill det_hits (act_id, rule_id) for the event rules of run $run_id
    (with $start and $end): the ones run first (det_judged, for the pamcorr/verdict rules, and
    an empty det_hits), then per group of rules the distinct values it reads (VALUES_SQL), the
    values its rules match (VALUE_HITS_SQL), and the actions holding those (HITS_SQL).

    Rules are grouped by the columns they read, and each group runs on the distinct values of
    its own columns: most rules read the command or API call only (few distinct values), and a
    rule that also reads the account must not multiply the values every other rule runs on.
    `carry`: the CARRIED columns det_hits holds besides act_id and rule_id."""
    events = [r for r in rules if not r.is_sequence]
    groups: dict[tuple[str, ...], list[Rule]] = {}
    for r in events:
        groups.setdefault(_columns(r), []).append(r)
    first = [JUDGED_SQL, EMPTY_HITS_SQL.format(
        carry="".join(f", NULL::{CARRIED[c][1]} AS {c}" for c in carry))]
    taken = "".join(f", {CARRIED[c][0]}" for c in carry)
    out = []
    for i, (cols, members) in enumerate(sorted(groups.items())):
        cases = "[" + ", ".join(f"CASE WHEN ({r.view.where}) AND ({r.sql}) THEN {_lit(r.id)} END"
                                for r in members) + "]::VARCHAR[]"
        views = " OR ".join(sorted({f"({r.view.where})" for r in members}))
        select = ", ".join(f"a.{c}" for c in cols) or "true AS one"
        join = " AND ".join(f"a.{c} IS NOT DISTINCT FROM v.{c}" for c in cols) or "true"
        out.append((VALUES_SQL.format(cols=select, views=views, n=i),
                    VALUE_HITS_SQL.format(cols=select, cases=cases, n=i),
                    HITS_SQL.format(join=join, n=i, carry=taken)))
    return first, out


def hits_sql(rules: list[Rule]) -> list[str]:
    """hit_groups' statements in order, every one (fill_hits skips what cannot match)."""
    first, groups = hit_groups(rules)
    return first + [statement for group in groups for statement in group]


def fill_hits(con, rules: list[Rule], params: dict, carry: tuple[str, ...] = ()) -> None:
    """Fill det_hits. A group none of whose rows are in the period (no CloudTrail in a store of
    commands) has no values, and its rules' statements are not run: planning the CASE of 18
    CloudTrail rules alone cost 0.02 s a run."""
    def run(statement: str):
        return con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
    first, groups = hit_groups(rules, carry)
    for statement in first:
        run(statement)
    for values, value_hits, hits in groups:
        if run(values).fetchall()[0][0]:
            run(value_hits)
            run(hits)


def read_columns(rules: list[Rule], every_column: bool = False) -> set[str]:
    """The det_events columns the sequences read: their group-by columns and value_count's
    field (all of them for pamcorr watch, which keeps the matches for later batches)."""
    if every_column:
        return set(EVENT_COLUMNS)
    return {c for r in rules if r.is_sequence
            for c in (*r.sequence.get("group_by", ()), r.sequence.get("field")) if c}


def carried(read: set[str]) -> tuple[str, ...]:
    """The columns det_hits carries for det_events: ts and the read ones of the action."""
    return ("ts", *(c for c in EVENT_COLUMNS if c in read and c in CARRIED))


def events_sql(rules: list[Rule], read: set[str], table: bool = False) -> str:
    """The statement making det_events over det_hits (carrying `carried(read)`): joined to det_f
    only when a sequence reads approval_id, and then a table, as when `table` (watch's hook
    adds rows)."""
    members = sorted({m for r in rules if r.is_sequence for m in r.sequence.get("rules", ())})
    columns = ", ".join((f"f.{c}" if c == "approval_id" else f"h.{c}") if c in read
                        else f"NULL::VARCHAR AS {c}" for c in EVENT_COLUMNS)
    joined = "approval_id" in read
    return EVENTS_SQL.format(kind="TABLE" if table or joined else "VIEW", columns=columns,
                             findings=EVENTS_FINDINGS if joined else "",
                             members=", ".join(_lit(m) for m in members) or "NULL")


def run_detections(con, run_id: int, start, end, now: datetime,
                   settings: DetectionSettings = DetectionSettings(),
                   record_rules: bool = True, events_hook=None) -> int:
    """Store the run's detections and the rules it ran; returns how many rows were stored.
    `record_rules=False` (pamcorr watch, which judges small batches often and knows its rules)
    skips the detection_rules rows. `events_hook(con)`, when given, runs once det_events holds
    the run's matches, before the sequences (pamcorr watch adds earlier batches' matches)."""
    if not settings.enabled:
        return 0
    rules = list(cached_rules(tuple(settings.rule_dirs)))
    params = {"start": start, "end": end, "run_id": run_id}
    read = read_columns(rules, every_column=events_hook is not None)
    fill_hits(con, rules, params, carried(read))
    con.execute(FINDINGS_SQL, {"run_id": run_id})
    drop_temp(con, "det_events")
    con.execute(events_sql(rules, read, table=events_hook is not None))
    if events_hook is not None:
        events_hook(con)
    blocks = [_lit(r.id) for r in rules if r.building_block]
    parts = ["SELECT act_id, rule_id, NULL::VARCHAR AS sequence_id, NULL::INTEGER AS position "
             "FROM det_hits" + (f" WHERE rule_id NOT IN ({', '.join(blocks)})" if blocks else "")]
    present = {r for (r,) in con.execute(PRESENT_SQL).fetchall()}
    parts += [f"SELECT act_id, {_lit(r.id)}, sequence_id, position::INTEGER "
              f"FROM ({sequence_sql(r.id, r.sequence)}) s" for r in rules
              if r.is_sequence and _possible(r.sequence, present)]
    con.execute("CREATE OR REPLACE TEMP TABLE det_all AS " + "\nUNION ALL\n".join(parts))
    muted = bool(settings.mutes)
    if muted:
        con.register("det_mutes", _mutes_frame(settings.mutes))
    try:
        stored = con.execute(INSERT_SQL if muted else INSERT_UNMUTED_SQL,
                             {"run_id": run_id, "now": now} if muted else {"run_id": run_id}
                             ).fetchall()[0][0]
        if rules and record_rules:
            con.execute(RULES_SQL, {
                "run_id": run_id, "rule_id": [r.id for r in rules],
                "title": [r.title for r in rules], "class": [r.cls for r in rules],
                "severity": [r.severity for r in rules],
                "attack": [list(r.attack) for r in rules],
                "description": [r.description for r in rules],
                "kind": [r.sequence.get("type", "event") for r in rules],
                "members": [list(r.sequence.get("rules", [])) for r in rules],
                "path": [r.path for r in rules], "sha256": [r.sha256 for r in rules]})
    finally:
        if muted:
            con.unregister("det_mutes")
        _drop(con)
    return stored


def _mutes_frame(mutes: tuple[Mute, ...]) -> "pd.DataFrame":
    import pandas as pd     # here, not at import: `pamcorr report` starts 0.3 s sooner
    frame = pd.DataFrame([(i, m.rule, m.account, m.target, m.ticket, m.reason, m.expires)
                          for i, m in enumerate(mutes)], columns=list(MUTE_COLUMNS))
    frame = frame.astype({"n": "int64"}).astype(
        {c: object for c in MUTE_COLUMNS if c not in ("n", "expires")})
    frame["expires"] = pd.to_datetime(frame["expires"], utc=True)
    return frame


def _drop(con) -> None:
    drop_temp(con, "det_events")          # first: the view reads det_hits
    for name in ("det_judged", "det_hits", "det_all", "det_f"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary "
                               "AND regexp_matches(table_name, '^det_vals?(_hits)?_[0-9]+$')"
                               ).fetchall():
        con.execute(f"DROP TABLE IF EXISTS {name}")
