"""Shared SQL for the JSON connectors: one field spec, read fast by DuckDB or exactly line by line.

A connector names the JSON paths it needs (`Fields`: name -> key path). Two
SELECTs give the same columns `line, raw, parse_error, f_<name>` (all text):

* `fast_sql`: DuckDB's `read_json` with an explicit `columns=` schema (only the
  top-level keys needed; nested keys through STRUCT types). Fast, but it fails
  on the first bad line and skips blank lines (so after a blank line its `line`
  numbers run one short), and `raw` is NULL. `staged_pair` numbers its lines.
* `exact_sql`: every physical line read as text (`read_csv` with a delimiter that
  cannot occur), `line` its true 1-based number, `raw` the line, `parse_error` set
  for invalid JSON or a value that is not an object.

For documents holding many records (CloudTrail `{"Records": [...]}`),
`records_fast_sql` (typed parse, `raw` NULL) and `records_sql` (record by record,
with `raw`) are the same pair, `line` being the record's ordinal in the file.
`array_files_sql` reads the records of many such arrays, cut out of their documents
(`records_array`), with one typed `read_json` (correlate/ingest/many.py).

The store runs the fast SELECT first and the exact one when the fast one fails
or quarantines anything (connectors/base.py `Staged.exact`), so quarantined rows
always carry the real line and text. All read `.gz` files transparently.
Needs DuckDB >= 1.3 (`try()`, `lambda x:` syntax).
"""

from __future__ import annotations

import re
from pathlib import Path

from connectors.base import Staged, ts_sql

Fields = dict[str, tuple[str, ...]]

MAX_OBJECT = 16 * 1024 * 1024          # largest JSON line either reader accepts
MAX_DOCUMENT = 256 * 1024 * 1024       # largest whole-document read (CloudTrail Records)

LINES_SQL = (
    "SELECT row_number() OVER () AS line, raw FROM read_csv($path, columns={{'raw': 'VARCHAR'}}, "
    "header=false, delim=E'\\x01', quote='', escape='', auto_detect=false, strict_mode=false, "
    "max_line_size={max_line})"
)

# Why a line is unusable, given `j`, the fields extracted from it (NULL unless an object).
PARSE_ERROR_SQL = (
    "CASE WHEN j IS NOT NULL THEN NULL WHEN json_valid(raw) THEN 'JSON value is not an object' "
    "ELSE 'invalid JSON' END"
)


def lines_sql(max_line: int = MAX_OBJECT, decoded: bool = False) -> str:
    """Every physical line of $path with its 1-based number (blank lines are NULL) and `bad`,
    why its text is unusable (NULL). `decoded`: the lines come from the frame `src` that
    `decoded_lines` made, for a file DuckDB cannot read because some bytes are not UTF-8."""
    if decoded:
        return "SELECT line, raw, bad FROM src"
    return f"SELECT line, raw, NULL::VARCHAR AS bad FROM ({LINES_SQL.format(max_line=int(max_line))}) l"


def decoded_lines(path: Path):
    """DataFrame (line, raw, bad) of every line of `path` (.gz too) decoded in Python: a line
    with bytes that are not UTF-8 gets them as U+FFFD and `bad` saying where. The fallback of
    the exact readers only (slow: it holds the whole file)."""
    import gzip

    import pandas as pd

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines, raws, bads = [], [], []
    for n, chunk in enumerate(data.split(b"\n"), 1):
        chunk = chunk[:-1] if chunk.endswith(b"\r") else chunk
        if not chunk.strip():
            continue
        try:
            raw, bad = chunk.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            raw = chunk.decode("utf-8", "replace")
            bad = (f"invalid UTF-8: byte 0x{chunk[exc.start]:02x} at column {exc.start + 1} "
                   f"(shown as U+FFFD)")
        lines.append(n)
        raws.append(raw)
        bads.append(bad)
    return pd.DataFrame({"line": pd.Series(lines, dtype="int64"),
                         "raw": pd.Series(raws, dtype=object), "bad": pd.Series(bads, dtype=object)})


def jpath(keys: tuple[str, ...]) -> str:
    """A DuckDB JSON path literal for a key path of our own constants."""
    return "$" + "".join('."' + k.replace('"', '\\"') + '"' for k in keys)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _path_list(paths: list[tuple[str, ...]]) -> str:
    return "[" + ", ".join(_lit(jpath(p)) for p in paths) + "]"


def _tree(paths: list[tuple[str, ...]]) -> dict | None:
    """Nested dict of keys (leaf = None); None when a key is both a leaf and an object."""
    tree: dict = {}
    for keys in paths:
        node = tree
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if key in node and (node[key] is None) != last:
                return None
            node = node.setdefault(key, None if last else {})
    return tree


def _struct_type(tree: dict) -> str:
    return "STRUCT(" + ", ".join(
        f"{_ident(k)} {'VARCHAR' if v is None else _struct_type(v)}" for k, v in tree.items()) + ")"


def _typed_read(fields: Fields) -> tuple[str, str]:
    """(read_json `columns=` map, select list of `f_*`) for the fields.

    A top-level key read for nested fields is typed as a STRUCT of exactly those
    fields (no JSON text made and parsed again); a value of another shape makes
    the read fail, and the store falls back to the exact reader.
    """
    by_top: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for name, keys in fields.items():
        by_top.setdefault(keys[0], []).append((name, keys[1:]))
    columns, select = [], []
    for top, subs in by_top.items():
        tree = _tree([s for _, s in subs if s])
        if all(not s for _, s in subs):
            columns.append(f"{_lit(top)}: 'VARCHAR'")
            select += [f"{_ident(top)} AS f_{name}" for name, _ in subs]
        elif tree is not None and all(s for _, s in subs):
            columns.append(f"{_lit(top)}: {_lit(_struct_type(tree))}")
            for name, sub in subs:
                expr = _ident(top)
                for key in sub:
                    expr = f"struct_extract({expr}, {_lit(key)})"
                select.append(f"{expr} AS f_{name}")
        else:   # a key read both whole and in parts: JSON text, parts extracted from it
            columns.append(f"{_lit(top)}: 'JSON'")
            for name, s in subs:
                select.append(f"json_extract_string({_ident(top)}, {_lit(jpath(s))}) AS f_{name}")
    return "{" + ", ".join(columns) + "}", ", ".join(select)


def fast_sql(fields: Fields) -> str:
    """`line` (NULL: numbered later), `raw` (NULL), `parse_error` (NULL), `f_*` from read_json
    (typed as `_typed_read` says)."""
    columns, select = _typed_read(fields)
    return (
        f"SELECT NULL::BIGINT AS line, NULL::VARCHAR AS raw, NULL::VARCHAR AS parse_error, "
        f"{select} FROM read_json($path, format='newline_delimited', "
        f"columns={columns}, maximum_object_size={MAX_OBJECT})"
    )


def array_files_sql(fields: Fields) -> str:
    """`filename, line` (NULL), `raw` (NULL), `parse_error` (NULL), `f_*` for every record
    of the files $paths (a list), each holding one JSON array of records: in one
    statement, in file order (with preserve_insertion_order). Typed as fast_sql; a
    file that is not such an array, or a value of another shape, fails the read.
    """
    columns, select = _typed_read(fields)
    return (
        f"SELECT filename, NULL::BIGINT AS line, NULL::VARCHAR AS raw, "
        f"NULL::VARCHAR AS parse_error, {select} FROM read_json($paths, format='array', "
        f"columns={columns}, filename=true, maximum_object_size={MAX_OBJECT})"
    )


_WS = b" \t\r\n"
_RECORDS_HEAD = re.compile(rb'[ \t\r\n]*\{[ \t\r\n]*"Records"[ \t\r\n]*:[ \t\r\n]*\[')


def records_head(head: bytes) -> bool:
    """True when a document's first bytes open `{"Records": [`."""
    return _RECORDS_HEAD.match(head) is not None


def records_array(doc) -> tuple[int, int] | None:
    """(start, end) of the array in `doc` (bytes, or an mmap of them), a document that is
    exactly `{"Records": [...]}`.

    Strict about what lies outside the brackets: only whitespace around the braces; else
    None (the caller reads the file the usual way). What lies between them is left to
    the JSON reader, which rejects text after the array's end (`[...], "more": 1` or a
    second document), so such a file fails the read and is read the usual way too.
    """
    head = _RECORDS_HEAD.match(doc)
    if head is None:
        return None
    end = len(doc)
    while end and doc[end - 1] in _WS:
        end -= 1
    if not end or doc[end - 1] != ord("}"):
        return None
    end -= 1
    while end and doc[end - 1] in _WS:
        end -= 1
    if end <= head.end() - 1 or doc[end - 1] != ord("]"):
        return None
    return head.end() - 1, end


def extract_sql(fields: Fields, doc: str = "raw") -> tuple[str, str]:
    """(list expression over `doc`, select list `j[i] AS f_name`) for every field."""
    names = list(fields)
    expr = f"json_extract_string({doc}, {_path_list([fields[n] for n in names])})"
    return expr, ", ".join(f"j[{i + 1}] AS f_{n}" for i, n in enumerate(names))


def exact_sql(fields: Fields, decoded: bool = False) -> str:
    """`line, raw, parse_error, f_*` for every non-blank physical line of $path (or of the
    frame `src`: lines_sql `decoded`)."""
    expr, select = extract_sql(fields)
    # try(): text that is not JSON gives NULL instead of failing the whole statement.
    # MATERIALIZED: parse each line once; without it the optimizer copies the extraction
    # into every filter and CASE that uses a field (measured: 18 parses per line).
    return (
        f"(WITH x AS MATERIALIZED ("
        f"  SELECT line, raw, bad, CASE WHEN bad IS NULL AND starts_with(ltrim(raw), '{{') "
        f"  THEN try({expr}) END AS j "
        f"  FROM ({lines_sql(decoded=decoded)}) WHERE raw IS NOT NULL AND trim(raw) <> '') "
        f"SELECT line, raw, coalesce(bad, {PARSE_ERROR_SQL}) AS parse_error, {select} FROM x)"
    )


def records_sql(fields: Fields, whole_file: bool, decoded: bool = False) -> str:
    """`line, raw, parse_error, f_*` for each record of `{"Records": [...]}` documents.

    A document is one line of $path (`whole_file` False: JSON lines, each a Records
    document or a single record) or the whole file (`whole_file` True: pretty-printed,
    or a top-level array). `line` is the record's 1-based ordinal in the file and
    `raw` the record's JSON text. Documents that are not JSON count as one record.
    `decoded`: lines from the frame `src` (lines_sql); a record of a document with bytes
    that are not UTF-8 is quarantined when it holds one of them (U+FFFD).
    """
    lines = lines_sql(MAX_DOCUMENT, decoded)
    docs = (f"SELECT * FROM (SELECT 1 AS doc, string_agg(raw, chr(10) ORDER BY line) AS raw, "
            f"min(bad) AS bad FROM ({lines}) WHERE raw IS NOT NULL) WHERE trim(raw) <> ''"
            if whole_file else
            f"SELECT line AS doc, raw, bad FROM ({lines}) "
            f"WHERE raw IS NOT NULL AND trim(raw) <> ''")
    expr, select = extract_sql(fields, "rec")
    # Every step MATERIALIZED: unnest over an expression re-evaluates it per output chunk
    # (quadratic on big documents), and the optimizer would copy the extraction around.
    return f"""(
WITH d AS MATERIALIZED (
    SELECT doc, raw, bad AS text_bad, try(CASE
        WHEN json_type(raw, '$.Records') = 'ARRAY' THEN json_extract(raw, '$.Records[*]')
        WHEN json_type(raw) = 'ARRAY' THEN json_extract(raw, '$[*]')
        ELSE [raw::JSON] END) AS recs
    FROM ({docs}) docs),
n AS MATERIALIZED (
    SELECT doc, raw, text_bad, recs, coalesce(sum(coalesce(len(recs), 1)) OVER (ORDER BY doc
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS base FROM d),
r AS MATERIALIZED (
    SELECT base + 1 AS line, raw AS bad, text_bad, NULL::JSON AS rec FROM n WHERE recs IS NULL
    UNION ALL
    SELECT base + unnest(range(1, len(recs) + 1)) AS line, NULL, text_bad, unnest(recs) FROM n
    WHERE recs IS NOT NULL),
x AS MATERIALIZED (
    SELECT line, coalesce(rec::VARCHAR, bad) AS raw,
        CASE WHEN text_bad IS NOT NULL AND (bad IS NOT NULL OR contains(rec::VARCHAR, '\ufffd'))
             THEN text_bad
             WHEN bad IS NOT NULL THEN 'invalid JSON'
             WHEN json_type(rec) <> 'OBJECT' THEN 'record is not a JSON object' END
            AS parse_error,
        CASE WHEN json_type(rec) = 'OBJECT' THEN {expr} END AS j
    FROM r)
SELECT line, raw, parse_error, {select} FROM x)"""


def _shape(tree: dict) -> dict:
    return {k: "VARCHAR" if v is None else _shape(v) for k, v in tree.items()}


def records_fast_sql(fields: Fields, whole_file: bool, doc_filter: str | None = None) -> str:
    """records_sql's rows with `raw` NULL, each document parsed once into typed records.

    No JSON text is made per record (that is what records_sql spends its time on).
    A document that does not parse gives one record of NULL fields, which the
    connector quarantines, so the store re-runs records_sql for the real reason.
    `doc_filter` (SQL on `raw`) skips documents before parsing; the ordinals of
    the records kept are then not their place in the file.
    """
    import json

    tree = _tree(list(fields.values()))
    rec = json.dumps(_shape(tree), separators=(",", ":"))
    docs = (f"SELECT * FROM (SELECT 1 AS doc, string_agg(raw, chr(10) ORDER BY line) AS raw "
            f"FROM ({lines_sql(MAX_DOCUMENT)}) WHERE raw IS NOT NULL) WHERE trim(raw) <> ''"
            if whole_file else
            f"SELECT line AS doc, raw FROM ({lines_sql(MAX_DOCUMENT)}) "
            f"WHERE raw IS NOT NULL AND trim(raw) <> ''")
    if doc_filter:
        docs = f"SELECT * FROM ({docs}) unfiltered WHERE {doc_filter}"
    select = []
    for name, keys in fields.items():
        expr = "rec"
        for key in keys:
            expr = f"struct_extract({expr}, {_lit(key)})"
        select.append(f"{expr} AS f_{name}")
    return f"""(
WITH d AS MATERIALIZED (
    SELECT doc, coalesce(
        try(from_json(raw, {_lit('{"Records":[' + rec + ']}')})).Records,
        CASE WHEN starts_with(ltrim(raw), '[') THEN try(from_json(raw, {_lit('[' + rec + ']')}))
             ELSE [try(from_json(raw, {_lit(rec)}))] END) AS recs
    FROM ({docs}) docs),
n AS MATERIALIZED (
    SELECT doc, recs, coalesce(sum(len(recs)) OVER (ORDER BY doc ROWS
           BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS base FROM d),
r AS MATERIALIZED (
    SELECT base + unnest(range(1, len(recs) + 1)) AS line, unnest(recs) AS rec FROM n)
SELECT line, NULL::VARCHAR AS raw, NULL::VARCHAR AS parse_error, {', '.join(select)} FROM r)"""


def staged_pair(table: str, fields: Fields, path: Path, params: dict, final, rows=None,
                number_lines: bool = True, tail_safe: bool = False) -> Staged:
    """A Staged batch read fast (read_json) with the exact line reader as its fallback.

    `rows(source)` adds per-row expressions (no filters, no windows: it runs before
    the fast path numbers its lines, so the numbering window carries only narrow
    rows); `final(rows_sql)` may filter, group and use `line`. A batch whose good
    rows need no line (ignored records are only counted) can skip the numbering. `tail_safe`:
    no record depends on an earlier line (Staged.tail_safe).
    """
    rows = rows or (lambda src: src)
    params = {**params, "path": str(path)}
    numbered = rows(fast_sql(fields))
    if number_lines:
        numbered = f"SELECT row_number() OVER () AS line, * EXCLUDE (line) FROM ({numbered}) n"
    exact = Staged(table, sql=final(rows(exact_sql(fields))), params=params,
                   exact=decoded_staged(table, final(rows(exact_sql(fields, True))), path,
                                        params))
    return Staged(table, sql=final(numbered), params=params, exact=exact,
                  skips_blank_lines=number_lines, tail_safe=tail_safe)


def decoded_staged(table: str, sql: str, path: Path, params: dict) -> Staged:
    """The exact reader's own fallback: `sql` over the lines of `path` decoded in Python
    (decoded_lines), for a file with bytes that are not UTF-8, which DuckDB's readers refuse."""
    return Staged(table, sql=sql, params=params, frame=lambda: decoded_lines(path))


def ts_fast_sql(col: str) -> str:
    """connectors.base.ts_sql (whose first branch is the cheap one for ISO 8601 UTC), with Go's
    zero time (0001-01-01, written for unset timestamps) as NULL."""
    return f"(CASE WHEN {col} LIKE '0001-01-01%' THEN NULL ELSE {ts_sql(col)} END)"


def wrong_type_sql(keys: tuple[str, ...], doc: str = "raw") -> str:
    """SQL: why record `doc` (JSON text, or NULL on a fast path, which fails on such records)
    is unusable because one of the top-level `keys` holds something other than an object
    (NULL when none does)."""
    kinds = ("CASE t WHEN 'VARCHAR' THEN 'a string' WHEN 'ARRAY' THEN 'an array' "
             "WHEN 'BOOLEAN' THEN 'a boolean' ELSE 'a number' END")
    whens = " ".join(
        f"WHEN json_type({doc}, {_lit(jpath((k,)))}) NOT IN ('OBJECT', 'NULL') THEN "
        f"{_lit('wrong type: ' + k + ' is ')} || "
        f"{kinds.replace('CASE t', f'CASE json_type({doc}, {_lit(jpath((k,)))})')} "
        f"|| ', a JSON object expected'" for k in keys)
    return f"(CASE WHEN {doc} IS NULL THEN NULL {whens} END)"


def json_list_sql(col: str, sep: str = ",") -> str:
    """A JSON array of strings held as text in `col` -> its items joined by `sep` (NULL if none)."""
    return f"nullif(array_to_string(try(from_json({col}, '[\"VARCHAR\"]')), {_lit(sep)}), '')"


def attrs_sql(pairs: list[tuple[str, str]]) -> str:
    """JSON object text of the (key, SQL expression) pairs that are not NULL; NULL if none."""
    members = ", ".join(f"CASE WHEN ({v}) IS NOT NULL THEN {_lit(chr(34) + k + chr(34) + ':')} "
                        f"|| to_json({v}) END" for k, v in pairs)
    return f"nullif('{{' || concat_ws(',', {members}) || '}}', '{{}}')"


def content_id_sql(cols: list[str], optional: list[str] = ()) -> str:
    """A stable event id from a record's content, for records that carry none. A missing value
    of `cols` hashes as an empty one, in its place: concat_ws alone skips NULLs, so {detail: x}
    and {session_id: x} would get one id and the second be dropped as a duplicate. `optional`
    values (at the end) count only when present, so adding one keeps the ids of rows without."""
    parts = [f"coalesce({c}, '')" for c in cols] + list(optional)
    return "'sha:' || left(sha256(concat_ws(chr(31), " + ", ".join(parts) + ")), 32)"


def host_sql(col: str) -> str:
    """`host:port` or `[v6]:port` -> host (other text unchanged)."""
    return (f"CASE WHEN {col} LIKE '[%]%' THEN regexp_extract({col}, '^\\[([^\\]]*)\\]', 1) "
            f"WHEN regexp_full_match({col}, '[^:]+:[0-9]+') THEN split_part({col}, ':', 1) "
            f"ELSE {col} END")


def peek(path: Path, size: int = 65536) -> str:
    """The first `size` bytes of a (possibly gzipped) file as text, BOM removed."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(size)
    return head.decode("utf-8", errors="replace").lstrip("\ufeff")
