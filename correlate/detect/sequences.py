"""Sigma correlation rules as DuckDB SQL over the run's single-event matches (table det_events).

det_events holds one row per (action, matching event rule) of the run with the action's ts and
the group-by columns (account, target, session_id, actor, approval_id, detail, source). Each
function returns a SELECT of (sequence_id, act_id, position) for one sequence rule:

- temporal_ordered: rule 1, then rule 2 strictly later, ... all within the timespan of the first
  (ASOF joins: each member is the first match after the previous one); when several first
  members lead to the same chain, the latest one (the tightest sequence) is kept;
- temporal: every listed rule matches within the timespan, in any order;
- event_count / value_count: at least N matches (N distinct values of a field) within the
  timespan.
For temporal, event_count and value_count, qualifying windows of one group that overlap merge
into one sequence holding every match of the listed rules in their span.

Rule ids and group-by names are checked identifiers (rules.py), never user text; values are
bound. A sequence's id is a hash of its rule and members, so re-running a period gives the same.
"""

from __future__ import annotations


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _members(rule_id: str, rows: str, member_cols: list[str]) -> str:
    """(sequence_id, act_id, position) from `rows`, one row per sequence with member columns."""
    ids = "[" + ", ".join(member_cols) + "]"
    return f"""
SELECT md5({_lit(rule_id)} || ':' || array_to_string({ids}, ',')) AS sequence_id,
       unnest({ids}) AS act_id, unnest(range(1, {len(member_cols) + 1})) AS position
FROM ({rows}) s"""


def ordered_sql(rule_id: str, seq: dict) -> str:
    rules, g, secs = seq["rules"], seq["group_by"], seq["seconds"]
    cols = "".join(f", {c}" for c in g)
    sql = (f"s1 AS (SELECT act_id AS m1, ts AS t1{cols} FROM det_events "
           f"WHERE rule_id = {_lit(rules[0])})")
    prev = "s1"
    for i, rid in enumerate(rules[1:], start=2):
        cond = " AND ".join([f"e.{c} IS NOT DISTINCT FROM {prev}.{c}" for c in g] +
                            [f"e.ts > {prev}.t{i - 1}"])
        sql += (f",\ns{i} AS (SELECT {prev}.*, e.act_id AS m{i}, e.ts AS t{i} FROM {prev} "
                f"ASOF JOIN (SELECT * FROM det_events WHERE rule_id = {_lit(rid)}) e ON {cond})")
        prev = f"s{i}"
    n = len(rules)
    rows = (f"WITH {sql}\nSELECT * FROM {prev} WHERE t{n} <= t1 + to_seconds({secs}) "
            f"QUALIFY row_number() OVER (PARTITION BY m{n} ORDER BY t1 DESC, m1) = 1")
    return _members(rule_id, rows, [f"m{i}" for i in range(1, n + 1)])


def _events(seq: dict) -> str:
    """The matches of the sequence's rules with their group key (gk) and counted value (v)."""
    g = seq["group_by"]
    gkey = f"struct_pack({', '.join(g)})" if g else "NULL::INTEGER"
    return (f"SELECT act_id, rule_id, ts, {gkey} AS gk, {seq.get('field') or 'NULL'} AS v "
            f"FROM det_events WHERE rule_id IN ({', '.join(_lit(r) for r in seq['rules'])})")


def _clustered(rule_id: str, seq: dict, hit: str) -> str:
    """Members of the sequences whose qualifying window ends are `hit` (gk, ts): window ends less
    than a timespan apart in one group form one sequence of every match in their span."""
    secs = seq["seconds"]
    return f"""
WITH ev AS ({_events(seq)}),
hit AS ({hit}),
cl AS (SELECT gk, ts, sum(CASE WHEN prev IS NULL OR ts - prev > to_seconds({secs})
                               THEN 1 ELSE 0 END) OVER (PARTITION BY gk ORDER BY ts) AS c_id
       FROM (SELECT gk, ts, lag(ts) OVER (PARTITION BY gk ORDER BY ts) AS prev FROM hit) h),
spans AS (SELECT gk, c_id, min(ts) - to_seconds({secs}) AS lo, max(ts) AS hi FROM cl
          GROUP BY gk, c_id),
mem AS (SELECT DISTINCT s.gk, s.c_id, e.act_id, e.ts FROM spans s JOIN ev e
        ON e.gk IS NOT DISTINCT FROM s.gk AND e.ts >= s.lo AND e.ts <= s.hi),
ids AS (SELECT gk, c_id, md5({_lit(rule_id)} || ':' || string_agg(act_id::VARCHAR, ','
                                                                  ORDER BY ts, act_id)) AS sid
        FROM mem GROUP BY gk, c_id)
SELECT i.sid AS sequence_id, m.act_id,
       row_number() OVER (PARTITION BY i.sid ORDER BY m.ts, m.act_id) AS position
FROM mem m JOIN ids i ON i.gk IS NOT DISTINCT FROM m.gk AND i.c_id = m.c_id"""


def temporal_sql(rule_id: str, seq: dict) -> str:
    """Every listed rule within the timespan, any order: a window ending at a match qualifies
    when each rule has a match in it (the latest match of each rule at or before the end)."""
    rules, secs = seq["rules"], seq["seconds"]
    sql, prev = f"s0 AS (SELECT act_id AS m0, ts AS t0, gk FROM ({_events(seq)}) e)", "s0"
    for i, rid in enumerate(rules, start=1):
        sql += (f",\ns{i} AS (SELECT {prev}.*, e.ts AS t{i} FROM {prev} ASOF JOIN "
                f"(SELECT * FROM ({_events(seq)}) x WHERE rule_id = {_lit(rid)}) e "
                f"ON e.gk IS NOT DISTINCT FROM {prev}.gk AND e.ts <= {prev}.t0)")
        prev = f"s{i}"
    within = " AND ".join(f"t{i} >= t0 - to_seconds({secs})" for i in range(1, len(rules) + 1))
    return _clustered(rule_id, seq, f"WITH {sql} SELECT gk, t0 AS ts FROM {prev} WHERE {within}")


def count_sql(rule_id: str, seq: dict) -> str:
    """event_count and value_count: windows of the timespan holding enough matches (values)."""
    agg = "count(DISTINCT v)" if seq["type"] == "value_count" else "count(*)"
    hit = (f"SELECT gk, ts FROM (SELECT gk, ts, {agg} OVER (PARTITION BY gk ORDER BY ts RANGE "
           f"BETWEEN to_seconds({seq['seconds']}) PRECEDING AND CURRENT ROW) AS c "
           f"FROM ({_events(seq)}) e) w WHERE c >= {seq['count']}")
    return _clustered(rule_id, seq, hit)


def sequence_sql(rule_id: str, seq: dict) -> str:
    if seq["type"] == "temporal_ordered":
        return ordered_sql(rule_id, seq)
    if seq["type"] == "temporal":
        return temporal_sql(rule_id, seq)
    return count_sql(rule_id, seq)
