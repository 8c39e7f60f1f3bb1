"""Findings as CSV and JSON lines rendered by DuckDB: each line is built in SQL and fetched in
large batches, so no finding becomes a Python object. Byte for byte what reports/export.py's
write_csv / write_jsonl write (tests/test_export_sql.py compares them): the same formula guard,
RFC 4180 quoting, `<U+XXXX>` markers for invisible characters (reports/visible.py) and
json.dumps(sort_keys=True, ensure_ascii=False) spelling."""

from __future__ import annotations

import os
import re
from typing import IO

import duckdb

from correlate import queries
from correlate.errors import StoreError
from correlate.findings import FINDING_FIELDS
from correlate.store import Store
from reports.export import CSV_COLUMNS

# reports/visible.py's INVISIBLE in RE2 spelling.
INVISIBLE_RE2 = (r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\x{ad}\x{61c}\x{180e}\x{200b}-\x{200f}"
                 r"\x{2028}-\x{202e}\x{2060}-\x{2064}\x{2066}-\x{206f}\x{feff}\x{fff9}-\x{fffb}"
                 r"\x{e0000}-\x{e007f}]")

# formula_safe's guard after reveal(): Unicode blanks other than TAB, CR, LF (those left visible
# by reveal), then a formula start.
FORMULA_RE2 = (r"^[ \x{a0}\x{1680}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}]*"
               r"[=+\-@\t\r\n\x{ff1d}\x{ff0b}\x{ff0d}\x{ff20}]")

# What each findings column is; a column not named is text (revealed, guarded, quoted). The
# issue key is `iss-` and hex digits: nothing to reveal, guard or quote.
FINDING_KINDS = {"ts": "ts", "gap_seconds": "float", "run_id": "int", "issue_key": "key"}


def _reveal(x: str, flag: str = "true") -> str:
    """SQL: x with each invisible character as <U+XXXX> (one code point at a time, only for the
    rare text that holds one). `flag`: false when no column of the row holds one (row_flag)."""
    return (f"CASE WHEN {flag} AND regexp_matches({x}, '{INVISIBLE_RE2}') THEN array_to_string(list_transform("
            f"regexp_extract_all({x}, '(?s).'), lambda c: CASE WHEN regexp_matches(c, '{INVISIBLE_RE2}')"
            f" THEN printf('<U+%04X>', unicode(c)) ELSE c END), '')"
            f" ELSE {x} END")


def _iso(x: str) -> str:
    """SQL: datetime.isoformat() in UTC with Z (microseconds only when not zero)."""
    return (f"strftime({x}, '%Y-%m-%dT%H:%M:%S') || CASE WHEN epoch_us({x}) % 1000000 <> 0 "
            f"THEN '.' || lpad(CAST(((epoch_us({x}) % 1000000) + 1000000) % 1000000 AS VARCHAR),"
            f" 6, '0') ELSE '' END || 'Z'")


def _float(x: str) -> str:
    """SQL: repr(float) (DuckDB's shortest round-trip text is Python's)."""
    return (f"CASE WHEN isnan({x}) THEN 'NaN' WHEN {x} = 'inf'::DOUBLE THEN 'Infinity' "
            f"WHEN {x} = '-inf'::DOUBLE THEN '-Infinity' ELSE CAST({x} AS VARCHAR) END")


def _text(col: str, kind: str) -> str:
    """SQL (layer 1): the value as formula_safe's text before the guard, NULL kept."""
    x = f"q.{col}"
    if kind == "ts":
        return _iso(x)
    if kind == "float":
        return _float(x)
    if kind == "int":
        return f"CAST({x} AS VARCHAR)"
    if kind == "bool":
        return f"CASE WHEN {x} THEN 'true' WHEN NOT {x} THEN 'false' END"
    if kind == "key":
        return x
    if kind == "list":      # reports/detections.py _cell: the items space-separated
        x = f"array_to_string(coalesce({x}, []::VARCHAR[]), ' ')"
    return _reveal(x, "q._inv")


GUARDED = ("text", "list")
# What FORMULA_RE2 can match at: the regex runs only on text that starts with one of these.
_FORMULA_FIRST = ", ".join(f"chr({ord(c)})" for c in
                           " \u00a0\u1680\u202f\u205f\u3000=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"
                           + "".join(map(chr, range(0x2000, 0x200b))))


def _guarded(col: str, kind: str) -> str:
    """SQL (layer 2): the formula guard on text columns (numbers and times are never guarded)."""
    if kind not in GUARDED:
        return col
    return (f"CASE WHEN left({col}, 1) IN ({_FORMULA_FIRST}) AND regexp_matches({col}, "
            f"'{FORMULA_RE2}') THEN '''' || {col} ELSE {col} END")


def _quoted(col: str, kind: str) -> str:
    """SQL (layer 3): csv_cell(); '' for NULL."""
    if kind not in GUARDED:
        return f"coalesce({col}, '')"
    return (f"coalesce(CASE WHEN contains({col}, ',') OR contains({col}, '\"') OR "
            f"contains({col}, chr(13)) OR contains({col}, chr(10)) "
            f"THEN '\"' || replace({col}, '\"', '\"\"') || '\"' ELSE {col} END, '')")


_JSON_SHORT = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json_string(x: str, flag: str = "true") -> str:
    """SQL: json.dumps(str, ensure_ascii=False) of text column x, NULL kept. `flag`: false when
    no column of the row holds a control character (row_flag)."""
    short = " ".join(f"WHEN chr({ord(k)}) THEN '{v}'" for k, v in _JSON_SHORT.items())
    esc = (f"CASE WHEN contains({x}, '\\') OR contains({x}, '\"') THEN "
           f"replace(replace({x}, '\\', '\\\\'), '\"', '\\\"') ELSE {x} END")
    return (f"'\"' || CASE WHEN {flag} AND regexp_matches({x}, '[\\x00-\\x1f]') THEN array_to_string("
            f"list_transform(regexp_extract_all({esc}, '(?s).'), lambda c: CASE WHEN unicode(c) >= 32 "
            f"THEN c ELSE CASE c {short} ELSE '\\u00' || lpad(lower(to_hex(unicode(c))), 2, '0')"
            f" END END), '') ELSE {esc} END || '\"'")


def _json_value(col: str, kind: str) -> str:
    x = f"q.{col}"
    if kind == "ts":
        v = f"'\"' || {_iso(x)} || '\"'"
    elif kind == "float":
        v = _float(x)
    elif kind == "int":
        v = f"CAST({x} AS VARCHAR)"
    elif kind == "bool":
        v = f"CASE WHEN {x} THEN 'true' WHEN NOT {x} THEN 'false' END"
    elif kind == "key":
        v = f"'\"' || {x} || '\"'"
    elif kind == "list":    # json.dumps of a list of str; NULL as [] (reports/detections.py)
        v = (f"'[' || array_to_string(list_transform(coalesce({x}, []::VARCHAR[]), "
             f"lambda s: {_json_string('s')}), ', ') || ']'")
    else:
        v = _json_string(x, "q._ctl")
    return f"coalesce({v}, 'null')"


CONTROL_RE2 = r"[\x00-\x1f]"


def row_flag(inner: str, columns, kinds: dict, pattern: str, name: str) -> str:
    """`inner` with one more column `name`: whether any text column of the row matches
    `pattern`. One regex over the row instead of one per column: most rows hold no invisible or
    control character, and then no column is searched again."""
    texts = []
    for c in columns:
        kind = kinds.get(c, "text")
        if kind == "text":
            texts.append(c)
        elif kind == "list":
            texts.append(f"array_to_string(coalesce({c}, []::VARCHAR[]), ' ')")
    return (f"SELECT *, regexp_matches(concat({', '.join(texts)}), '{pattern}') AS {name} "
            f"FROM ({inner})")


class Order:
    """How an export's inner query is ordered: its keys carried out of it and sorted on again
    (an ORDER BY inside a subquery does not order the outer query)."""

    def __init__(self, keys: dict[str, str], order: str):
        self.select = ", ".join(f"{expr} AS {name}" for name, expr in keys.items())
        self.names = ", ".join(keys)
        self.order = order


# Findings are not sorted again: FINDINGS_SQL's own ORDER BY sorts the stored columns, and the
# lines are rendered above it in that order (insertion order kept: run_lines, copy_lines).
# Sorting the rendered lines instead held them all in the sort (3 GB for 1e6 OCSF objects).
FINDINGS_ORDER = None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def csv_sql(columns, kinds: dict, inner: str, order: Order | None, copy: bool = False) -> str:
    """Three layers (text, guard, quote and join); the inner query's order kept by its keys (or
    as it comes, `order` None, when the inner query's own ORDER BY is the order).
    `copy`: for copy_lines, lines without their LF in a column named as the CSV header."""
    kind = {c: kinds.get(c, "text") for c in columns}
    l1 = ", ".join(f"{_text(c, kind[c])} AS {c}" for c in columns)
    l2 = ", ".join(f"{_guarded(c, kind[c])} AS {c}" for c in columns)
    line = ("concat(" + ", ',', ".join(_quoted(c, kind[c]) for c in columns)
            + ("" if copy else ", chr(10)") + ")")
    alias = _ident(",".join(columns)) if copy else "line"
    inner = row_flag(inner, columns, kinds, INVISIBLE_RE2, "_inv")
    if order is None:
        return (f"SELECT {line} AS {alias} FROM (SELECT {l2} FROM (SELECT {l1} FROM ({inner}) q))")
    return (f"SELECT {line} AS {alias} FROM (SELECT {l2}, {order.names} FROM (SELECT {l1}, "
            f"{order.select} FROM ({inner}) q)) {order.order}")


def jsonl_sql(fields, kinds: dict, inner: str, order: Order | None, copy: bool = False) -> str:
    parts = [f"'\"{k}\": ', {_json_value(k, kinds.get(k, 'text'))}" for k in sorted(fields)]
    line = ("concat('{', " + ", ', ', ".join(parts) + ", '}'"   # one concat, no growing
            + ("" if copy else ", chr(10)") + ")")
    inner = row_flag(inner, fields, kinds, CONTROL_RE2, "_ctl")
    if order is None:
        return f"SELECT {line} AS line FROM ({inner}) q"
    return f"SELECT line FROM (SELECT {line} AS line, {order.select} FROM ({inner}) q) {order.order}"


FINDINGS_CSV_SQL = csv_sql(CSV_COLUMNS, FINDING_KINDS, queries.FINDINGS_SQL, FINDINGS_ORDER)
FINDINGS_JSONL_SQL = jsonl_sql(FINDING_FIELDS, FINDING_KINDS, queries.FINDINGS_SQL,
                               FINDINGS_ORDER)
COPY_SQL = {"csv": csv_sql(CSV_COLUMNS, FINDING_KINDS, queries.FINDINGS_SQL, FINDINGS_ORDER, True),
            "jsonl": jsonl_sql(FINDING_FIELDS, FINDING_KINDS, queries.FINDINGS_SQL,
                               FINDINGS_ORDER, True)}

BATCH = 20_000


def fetch_batches(store: Store, sql: str, params: dict):
    """The one-column result of `sql`, BATCH values at a time (lists of str), in the order of
    its (or its inner query's) ORDER BY."""
    try:
        # the store turns insertion order off (store.py): on, projections above an ORDER BY keep it
        store.con.execute("SET preserve_insertion_order = true")
        try:
            cur = store.con.execute(sql, params)
            while rows := cur.fetchmany(BATCH):
                yield [r[0] for r in rows]
        finally:
            store.con.execute("SET preserve_insertion_order = false")
    except duckdb.Error as exc:
        raise StoreError(str(exc)) from exc


def write_lines(store: Store, sql: str, params: dict, out: IO[str], header: str = "") -> int:
    """Run `sql` (one column of finished lines) and write them in batches; returns how many."""
    if header:
        out.write(header)
    n = 0
    for lines in fetch_batches(store, sql, params):
        out.write("".join(lines))
        n += len(lines)
    return n


def copy_lines(store: Store, sql: str, params: dict, path, header: bool = False) -> int:
    """Run `sql` (one column of finished lines, without their LF) and let DuckDB write them to
    `path`, one a line, in the query's order, with no quoting or escaping (the lines are
    finished CSV or JSON); with `header`, the column's name first. Returns how many lines."""
    target = str(path).replace("'", "''")    # COPY takes no bound parameter for its file
    try:
        # the store turns insertion order off (store.py); the lines must come out in ORDER BY order
        store.con.execute("SET preserve_insertion_order = true")
        try:
            return store.con.execute(
                f"COPY ({sql}) TO '{target}' (FORMAT CSV, HEADER {str(header).lower()}, QUOTE '', "
                f"ESCAPE '', DELIMITER '\x01')", params).fetchall()[0][0]
        finally:
            store.con.execute("SET preserve_insertion_order = false")
    except duckdb.IOException as exc:   # full disk, ulimit -f: an OSError, as Python's writes raise
        code = re.search(r'"errno":\s*"?(\d+)', str(exc))
        if code:
            raise OSError(int(code[1]), os.strerror(int(code[1]))) from None
        raise OSError(str(exc)) from None
    except duckdb.Error as exc:
        raise StoreError(str(exc)) from exc


def findings_params(store: Store, run_id=None, verdict=None, status=None, account=None,
                    limit=None, kind=None, start=None, end=None) -> dict:
    """queries.findings' parameters (the run resolved: the latest by default)."""
    return {"run_id": queries.resolve_run(store, run_id), "verdict": verdict,
            "status": queries.statuses(status),
            "account": account, "kind": kind, "start": start, "end": end,
            "limit": limit if limit is not None else 2**62}


FINDINGS_SUMMARY_SQL = f"SELECT count(*), min(ts), max(ts) FROM ({queries.FINDINGS_SQL})"


def findings_summary(store: Store, **filters) -> tuple:
    """(how many, first ts, last ts) of the findings `filters` select."""
    return tuple(store.query(FINDINGS_SUMMARY_SQL, findings_params(store, **filters))[0])


def write_findings(store: Store, fmt: str, out: IO[str], **filters) -> int:
    """Findings of a run as CSV (with header) or JSON lines, rendered in SQL; returns how many."""
    params = findings_params(store, **filters)
    if fmt == "csv":
        return write_lines(store, FINDINGS_CSV_SQL, params, out, ",".join(CSV_COLUMNS) + "\n")
    if fmt == "jsonl":
        return write_lines(store, FINDINGS_JSONL_SQL, params, out)
    raise ValueError(f"format must be csv or jsonl, not {fmt!r}")


def copy_findings(store: Store, fmt: str, path, **filters) -> int:
    """write_findings's bytes written by DuckDB straight to `path` (no line through Python)."""
    return copy_lines(store, COPY_SQL[fmt], findings_params(store, **filters), path, fmt == "csv")
