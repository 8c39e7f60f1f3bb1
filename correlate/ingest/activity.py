"""Activity rows into the store: de-duplication, (account, target) keys, and the one-pass load.

Two ways in, storing the same rows (tests/test_ingest_direct.py checks it):

* `load_staged`: rows a connector staged in a temp table (the general path, with quarantine);
  act_id counts up, line is the record's line;
* `load_direct`: a big JSON-lines file parsed and inserted in one pass (no temp copy of 1e7
  rows). It is optimistic: any row that would be quarantined, or an event_id repeated within
  the file, aborts it (DuckDB's `error()`), the transaction rolls back and the caller takes the
  staged path, which quarantines with the exact line and text. Its rows keep no line number
  (act_id is a hash of source and event_id): see DIRECT_INSERT.

Keys are 64-bit and computed from the pair (schema 013), so neither path joins the rows to
`activity_keys`; `intern_keys` then records the new pairs, maps rows of pairs interned earlier
under another id back to it, and refuses a hash collision rather than mixing two pairs.
"""

from __future__ import annotations

from connectors.base import OPTIONAL_COLUMNS
from correlate.errors import StoreError
from correlate.ingest.base import scalar
from correlate.redact import redact_sql


def key_sql(account: str, target: str) -> str:
    """The 64-bit key of an (account, target) pair, case-insensitive."""
    return f"(hash(lower({account}), lower({target})) >> 1)::BIGINT"


def event_key_sql(source: str, event_id: str) -> str:
    """The 62-bit key of a stored action, its (source, event_id): the one-pass load's act_id
    (DIRECT_INSERT, with bit 62 set) and watch's filter of stored actions (correlate/watch/
    seen.py, `stored_ids` below) must compute it alike, or the filter would miss stored rows."""
    return f"(hash({source}, {event_id}) >> 2)"


def optional_columns(present, prefix: str) -> tuple[str, str]:
    """(column list, select list) of the optional activity columns among `present`; attrs are
    redacted like detail, as JSON text (it stays valid JSON)."""
    cols = [c for c in OPTIONAL_COLUMNS["activity"] if c in present]
    return ("".join(f", {c}" for c in cols),
            "".join(f", {redact_sql(prefix + c, json=True)}" if c == "attrs" else f", {prefix}{c}"
                    for c in cols))


# Within a file the first line of an event_id wins; across files the stored row wins.
# Both steps are skipped when cheap checks show they cannot remove anything.
ACTIVITY_GOOD = "SELECT * FROM stage WHERE reason IS NULL"
ACTIVITY_FIRST = ACTIVITY_GOOD + (" QUALIFY row_number() OVER (PARTITION BY event_id "
                                  "ORDER BY line) = 1")
ACTIVITY_NEW = """
SELECT s.* FROM ({good}) s
ANTI JOIN (SELECT event_id FROM activity WHERE source = $source) a ON a.event_id = s.event_id
"""

# Secrets are redacted on the way in (in the insert's parallel pipeline, not a second pass).
STAGED_INSERT = """
INSERT INTO activity (act_id, source, event_id, ts, account, target, action, detail, session_id,
                      actor, key_id, ingest_id, line{names})
SELECT (SELECT coalesce(max(act_id) FILTER (WHERE act_id < {hashed}), 0) FROM activity)
         + f.rid + 1,
       $source, f.event_id, f.ts, f.account, f.target, f.action, {detail}, f.session_id, f.actor,
       {key}, $ingest_id, f.line{values}
FROM fresh f
"""


# With `known` (watch: correlate/watch/seen.py, a filter of the stored (source, event_id) keys)
# only the rows it says may be stored are looked up, first among stored rows of their own time
# span (a line delivered again carries its timestamp; zone maps on ts skip the rest of the
# store), then, for any not found there (an event_id reused with another timestamp, or a false
# "maybe"), in the whole store as without it: the same rows are duplicates either way, and a
# batch costs the same however big the store is, unless an id is reused.
KNOWN_KEY = event_key_sql("$source", "c.event_id")
MAYBE_IDS = """
CREATE OR REPLACE TEMP TABLE maybe_ids AS
SELECT c.event_id, min(c.ts) AS ts FROM ({rows}) c
WHERE {key} IN (SELECT unnest($keys::UBIGINT[])) GROUP BY 1
"""
STORED_NEAR = """
CREATE OR REPLACE TEMP TABLE stored_ids AS
SELECT DISTINCT a.event_id FROM main.activity a
WHERE a.source = $source AND a.ts BETWEEN $lo AND $hi AND coalesce(a.ingest_id, -1) <> $ingest_id
  AND a.event_id IN (SELECT event_id FROM maybe_ids)
"""
STORED_FAR = """
INSERT INTO stored_ids SELECT DISTINCT a.event_id FROM main.activity a
WHERE a.source = $source AND coalesce(a.ingest_id, -1) <> $ingest_id
  AND a.event_id IN (SELECT event_id FROM maybe_ids ANTI JOIN stored_ids USING (event_id))
"""
NONE_STORED = ("CREATE OR REPLACE TEMP TABLE stored_ids AS SELECT NULL::VARCHAR AS event_id "
               "WHERE false")
ACTIVITY_KNOWN = "SELECT s.* FROM ({good}) s ANTI JOIN stored_ids USING (event_id)"


def stored_ids(con, known, source: str, ingest_id: int, rows: str) -> int:
    """Temp table `stored_ids`: the event_ids among `rows` (SQL with event_id, ts) that are
    stored for `source` by another ingest, found exactly but read only where `known` says they
    may be. Returns how many ids `known` flagged that are not stored (a false "maybe", then
    also a possible act_id clash for the one-pass load)."""
    import numpy as np
    params = {"source": source}
    keys = con.execute(f"SELECT {KNOWN_KEY} AS k FROM ({rows}) c", params).fetchnumpy()["k"]
    flagged = keys[known.maybe(np.asarray(keys, dtype=np.uint64))] if len(keys) else keys
    if not len(flagged):            # the usual batch: nothing of it can be stored
        con.execute(NONE_STORED)
        return 0
    con.execute(MAYBE_IDS.format(rows=rows, key=KNOWN_KEY),
                {**params, "keys": [int(k) for k in flagged]})
    lo, hi = con.execute("SELECT min(ts), max(ts) FROM maybe_ids").fetchall()[0]
    ids = {**params, "ingest_id": ingest_id}
    con.execute(STORED_NEAR, {**ids, "lo": lo, "hi": hi})
    unresolved = scalar(con, "SELECT count(*) FROM maybe_ids ANTI JOIN stored_ids "
                             "USING (event_id)", [])
    if unresolved:
        con.execute(STORED_FAR, ids)
        unresolved = scalar(con, "SELECT count(*) FROM maybe_ids ANTI JOIN stored_ids "
                                 "USING (event_id)", [])
    return unresolved


def _has_rows(con, source: str, ingest_id: int) -> bool:
    return bool(scalar(con, "SELECT count(*) FROM (SELECT 1 FROM activity WHERE source = ? "
                            "AND ingest_id <> ? LIMIT 1)", [source, ingest_id]))


def load_staged(con, source: str, ingest_id: int, known=None) -> int:
    """Insert the good rows of the temp view `stage`; returns how many were new. `known`: see
    `stored_ids`."""
    repeats = scalar(con, "SELECT count(*) - count(DISTINCT event_id) FROM stage "
                     "WHERE reason IS NULL", [])
    good = ACTIVITY_FIRST if repeats else ACTIVITY_GOOD
    if known is not None:
        stored_ids(con, known, source, ingest_id, ACTIVITY_GOOD)
        con.execute(f"CREATE OR REPLACE TEMP TABLE fresh AS {ACTIVITY_KNOWN.format(good=good)}")
    elif _has_rows(con, source, ingest_id):
        con.execute(f"CREATE OR REPLACE TEMP TABLE fresh AS {ACTIVITY_NEW.format(good=good)}",
                    {"source": source})
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW fresh AS {good}")
    present = {r[0] for r in con.execute("DESCRIBE fresh").fetchall()}
    names, values = optional_columns(present, "f.")
    inserted = con.execute(STAGED_INSERT.format(
        names=names, values=values, detail=redact_sql("f.detail"), hashed=HASHED_IDS,
        key=key_sql("f.account", "f.target")), {"source": source, "ingest_id": ingest_id}
    ).fetchone()[0]
    intern_keys(con, ingest_id)
    return inserted


# The one-pass load. Rows keep no file order (keeping it cost 1.4 s at 1e7, and numbering them
# afterwards another 1.5 s), so `line` stays NULL: the record is identified by its event_id
# (or content hash) and file. act_id is a hash of (source, event_id) in the upper half of the
# id space, so any thread can compute it; the dense ids of the staged path stay below.
HASHED_IDS = 1 << 62
DIRECT_INSERT = """
INSERT INTO activity (act_id, source, event_id, ts, account, target, action, detail, session_id,
                      actor, key_id, ingest_id, line{names})
SELECT ({ident} | {hashed})::BIGINT, $source, s.event_id, s.ts,
       s.account, s.target, s.action, {detail}, s.session_id, s.actor, {key}, $ingest_id,
       NULL{values}
FROM ({sql}) s
WHERE CASE WHEN s.reason IS NULL THEN true ELSE error('pamcorr: row to quarantine') END
"""
# Distinct ids prove distinct event_ids (and no hash collision) in the file.
DIRECT_REPEATS = ("SELECT count(*) - count(DISTINCT act_id) FROM activity "
                  "WHERE ingest_id = $ingest_id")
# Another stored row with a new row's id but not its (source, event_id) is a hash collision,
# which the staged path (dense ids) handles.
DIRECT_CLASHES = """
SELECT count(*) FROM activity n JOIN activity o ON o.act_id = n.act_id
WHERE n.ingest_id = $ingest_id AND o.ingest_id <> $ingest_id
  AND (o.source <> n.source OR o.event_id <> n.event_id)
"""
# Stored before, by either path: one identity for a stored action on every path, its
# (source, event_id), as the staged path (ACTIVITY_NEW) and the many-files path (DROP_STORED)
# have it. Matching act_ids would miss rows the staged path stored under dense ids.
DIRECT_STORED = """
DELETE FROM activity WHERE ingest_id = $ingest_id AND event_id IN (
    SELECT event_id FROM activity WHERE source = $source AND ingest_id <> $ingest_id)
"""


class NotDirect(Exception):
    """The one-pass load cannot be used for this file; take the staged path."""


# With `known`: only the rows `stored_ids` found are stored duplicates, and only a flagged row
# it did not find can clash (a stored one-pass row with its act_id has its key, so is flagged).
DIRECT_KNOWN = ("DELETE FROM activity WHERE ingest_id = $ingest_id "
                "AND event_id IN (SELECT event_id FROM stored_ids)")
DIRECT_NEW = "SELECT event_id, ts FROM main.activity WHERE ingest_id = {ingest_id:d}"


def load_direct(con, sql: str, params: dict, source: str, ingest_id: int,
                known=None) -> tuple[int, int]:
    """Parse and insert in one statement, inside the caller's transaction.

    Returns (read, accepted). Raises NotDirect when a row needs quarantine, an event_id
    repeats within the file (the first line must win: only the staged path knows lines) or
    ids clash; the caller must then roll back.
    """
    cols = [d[0] for d in con.execute(f"SELECT * FROM ({sql}) s LIMIT 0", params).description]
    names, values = optional_columns(cols, "s.")
    ids = {"ingest_id": ingest_id}
    try:
        read = con.execute(DIRECT_INSERT.format(
            sql=sql, names=names, values=values, detail=redact_sql("s.detail"),
            key=key_sql("s.account", "s.target"), hashed=HASHED_IDS,
            ident=event_key_sql("$source", "s.event_id")),
            {**params, "source": source, **ids}).fetchone()[0]
    except Exception as exc:        # a row to quarantine, or input the fast reader rejects
        raise NotDirect(str(exc)) from None
    if scalar(con, DIRECT_REPEATS, ids):
        raise NotDirect("an event_id repeats within the file")
    if read and known is not None:
        if stored_ids(con, known, source, ingest_id, DIRECT_NEW.format(ingest_id=ingest_id)) \
                and scalar(con, DIRECT_CLASHES + " AND n.event_id IN (SELECT event_id FROM "
                                "maybe_ids)", ids):
            raise NotDirect("activity ids clash")
        con.execute(DIRECT_KNOWN, ids)
    elif read and scalar(con, "SELECT count(*) FROM (SELECT 1 FROM activity WHERE ingest_id <> ? "
                              "LIMIT 1)", [ingest_id]):
        if scalar(con, DIRECT_CLASHES, ids):
            raise NotDirect("activity ids clash")
        con.execute(DIRECT_STORED, {**ids, "source": source})
    if read:
        intern_keys(con, ingest_id)
    accepted = scalar(con, "SELECT count(*) FROM activity WHERE ingest_id = ?", [ingest_id])
    return read, accepted


# The distinct spellings first, then lower() on those only: the same min and max per key as
# over every row, for less work (the new rows are still the transaction's own, read by one
# thread: 0.40-0.44 s instead of 0.56-0.61 s at 1e7).
NEW_KEYS = """
CREATE OR REPLACE TEMP TABLE new_keys AS
SELECT key_id, min(a) AS a, min(t) AS t, max(a) <> min(a) OR max(t) <> min(t) AS collides
FROM (SELECT key_id, lower(account) AS a, lower(target) AS t
      FROM (SELECT key_id, account, target FROM activity WHERE ingest_id BETWEEN ? AND ?
            GROUP BY ALL)) GROUP BY key_id
"""
# Pairs interned before 64-bit keys (or by another hash function) keep their stored id.
KEY_REMAP = """
CREATE OR REPLACE TEMP TABLE key_remap AS
SELECT n.key_id AS new_id, k.key_id AS old_id
FROM new_keys n JOIN activity_keys k ON k.account_norm = n.a AND k.target_norm = n.t
WHERE k.key_id <> n.key_id
"""
KEY_COLLISIONS = """
SELECT n.key_id, n.a, n.t FROM new_keys n
LEFT JOIN activity_keys k ON k.key_id = n.key_id
WHERE n.collides OR (k.key_id IS NOT NULL AND (k.account_norm <> n.a OR k.target_norm <> n.t)
                     AND n.key_id NOT IN (SELECT new_id FROM key_remap))
LIMIT 1
"""


def intern_keys(con, first_id: int, last_id: int | None = None) -> None:
    """Record the (account, target) pairs of ingests `first_id` to `last_id` (default: that one
    ingest) in activity_keys."""
    ids = [first_id, first_id if last_id is None else last_id]
    con.execute(NEW_KEYS, ids)
    con.execute(KEY_REMAP)
    if scalar(con, "SELECT count(*) FROM key_remap", []):
        con.execute("UPDATE activity SET key_id = r.old_id FROM key_remap r "
                    "WHERE activity.ingest_id BETWEEN ? AND ? AND activity.key_id = r.new_id",
                    ids)
    clash = con.execute(KEY_COLLISIONS).fetchone()
    if clash:
        raise StoreError(f"64-bit key collision for account/target {clash[1]!r}/{clash[2]!r} "
                         f"(key {clash[0]}); please report this")
    con.execute("INSERT INTO activity_keys SELECT key_id, a, t FROM new_keys n "
                "WHERE n.key_id NOT IN (SELECT new_id FROM key_remap) "
                "AND NOT EXISTS (SELECT 1 FROM activity_keys k WHERE k.key_id = n.key_id)")
    con.execute("DROP TABLE new_keys")
    con.execute("DROP TABLE key_remap")
