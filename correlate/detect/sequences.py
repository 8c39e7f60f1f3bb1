"""Sigma correlation rules as DuckDB SQL over the run's single-event matches (table det_events).

det_events holds one row per (action, matching event rule) of the run with the action's ts and
the group-by columns (account, target, session_id, actor, approval_id, detail, source). Each
function returns a SELECT of (sequence_id, act_id, position) for one sequence rule:

- temporal_ordered: rule 1, then rule 2 strictly later, ... all within the timespan of the first
  (ASOF joins: each member is the first match after the previous one); when several first
  members lead to the same chain, the latest one (the tightest sequence) is kept;
- temporal: every listed rule matches within the timespan, in any order (the latest match of each
  rule at or before an anchor, which is the latest member);
- event_count / value_count: at least N matches (N distinct values of a field) within the
  timespan; overlapping qualifying windows of one group merge into one sequence.

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
    steps = [f"SELECT act_id AS m1, ts AS t1, {', '.join(g) + ', ' if g else ''}1 AS k "
             f"FROM det_events WHERE rule_id = {_lit(rules[0])}"]
    prev = "s1"
    sql = f"s1 AS ({steps[0]})"
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


def temporal_sql(rule_id: str, seq: dict) -> str:
    rules, g, secs = seq["rules"], seq["group_by"], seq["seconds"]
    anchors = ("SELECT act_id AS m0, ts AS t0" + (", " + ", ".join(g) if g else "")
               + " FROM det_events WHERE rule_id IN (" + ", ".join(_lit(r) for r in rules) + ")")
    sql, prev = f"s0 AS ({anchors})", "s0"
    for i, rid in enumerate(rules, start=1):
        cond = " AND ".join([f"e.{c} IS NOT DISTINCT FROM {prev}.{c}" for c in g] +
                            [f"e.ts <= {prev}.t0"])
        sql += (f",\ns{i} AS (SELECT {prev}.*, e.act_id AS m{i}, e.ts AS t{i} FROM {prev} "
                f"ASOF JOIN (SELECT * FROM det_events WHERE rule_id = {_lit(rid)}) e ON {cond})")
        prev = f"s{i}"
    n = len(rules)
    within = " AND ".join(f"t{i} >= t0 - to_seconds({secs})" for i in range(1, n + 1))
    # the anchor must be one of the members (the latest), so each set is found once
    is_member = " OR ".join(f"m{i} = m0" for i in range(1, n + 1))
    rows = (f"WITH {sql}\nSELECT DISTINCT {', '.join(f'm{i}' for i in range(1, n + 1))} "
            f"FROM {prev} WHERE {within} AND ({is_member})")
    return _members(rule_id, rows, [f"m{i}" for i in range(1, n + 1)])


def count_sql(rule_id: str, seq: dict) -> str:
    """event_count and value_count: windows of the timespan holding enough matches (values)."""
    rules, g, secs, n = seq["rules"], seq["group_by"], seq["seconds"], seq["count"]
    agg = "count(DISTINCT v)" if seq["type"] == "value_count" else "count(*)"
    gkey = f"struct_pack({', '.join(g)})" if g else "NULL::INTEGER"
    return f"""
WITH ev AS (SELECT act_id, ts, {gkey} AS gk, {seq['field'] or 'NULL'} AS v FROM det_events
            WHERE rule_id IN ({', '.join(_lit(r) for r in rules)})),
w AS (SELECT *, {agg} OVER (PARTITION BY gk ORDER BY ts
                            RANGE BETWEEN to_seconds({secs}) PRECEDING AND CURRENT ROW) AS c
      FROM ev),
hit AS (SELECT gk, ts FROM w WHERE c >= {n}),
-- qualifying window ends less than a timespan apart belong to one sequence
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


def sequence_sql(rule_id: str, seq: dict) -> str:
    if seq["type"] == "temporal_ordered":
        return ordered_sql(rule_id, seq)
    if seq["type"] == "temporal":
        return temporal_sql(rule_id, seq)
    return count_sql(rule_id, seq)
