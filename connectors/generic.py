"""The generic CSV / JSON-lines contract every PAM, ticket and activity export can map to.

Kinds (see README "Generic format"): approvals, tickets, ticket_history, activity,
identities, targets, approvers. JSON lines are read by DuckDB (fast path; re-read line by line for
exact line numbers when a record is bad); CSV by Python's csv module, which
knows the physical line of every record; Parquet (the same columns, any types)
by DuckDB's Parquet reader, a record's "line" being its row number in the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import pandas as pd

from connectors.base import (
    TICKET_STATUSES, Options, Staged, dst_of, nonblank_sql, ts_problem_sql, ts_sql,
)
from connectors.jsonsql import MAX_OBJECT, content_id_sql, decoded_staged, lines_sql
from correlate.errors import InputError

# input field -> (table column, required, is timestamp)
SPEC: dict[str, list[tuple[str, str, bool, bool]]] = {
    "approvals": [
        ("approval_id", "approval_id", True, False), ("account", "account", True, False),
        ("target", "target", True, False), ("start", "start_ts", True, True),
        ("end", "end_ts", True, True), ("ticket", "ticket", False, False),
        ("requester", "requester", False, False), ("approver", "approver", False, False),
        ("kind", "kind", False, False), ("status", "status", False, False),
        ("revoked_at", "revoked_at", False, True)],
    "tickets": [
        ("ticket_id", "ticket_id", True, False), ("status", "status", True, False),
        ("opened", "opened", True, True), ("closed", "closed", False, True),
        ("planned_start", "planned_start", False, True),
        ("planned_end", "planned_end", False, True), ("assignee", "assignee", False, False),
        ("reporter", "reporter", False, False), ("title", "title", False, False),
        ("components", "components", False, False), ("work_start", "work_start", False, True),
        ("work_end", "work_end", False, True)],
    "ticket_history": [
        ("ticket_id", "ticket_id", True, False), ("ts", "ts", True, True),
        ("status", "status", True, False)],
    "activity": [
        ("event_id", "event_id", False, False), ("ts", "ts", True, True),
        ("account", "account", True, False), ("target", "target", True, False),
        ("action", "action", False, False), ("detail", "detail", False, False),
        ("session_id", "session_id", False, False), ("actor", "actor", False, False),
        ("approval_ref", "approval_ref", False, False), ("outcome", "outcome", False, False)],
    "identities": [
        ("alias", "alias", True, False), ("identity", "identity", True, False),
        ("kind", "kind", False, False), ("owner", "owner", False, False)],
    "targets": [
        ("name", "name", True, False), ("alias", "alias", False, False),
        ("group", "grp", False, False)],
    # who may approve what (approval hygiene, docs/hygiene.md): scope is a target name, a glob
    # or a targets.csv group; kinds the approval kinds it covers ("standard; break_glass"),
    # empty for every kind.
    "approvers": [
        ("approver", "approver", True, False), ("scope", "scope", True, False),
        ("kinds", "kinds", False, False)],
}

_STATUSES = ", ".join(f"'{s}'" for s in TICKET_STATUSES)

# Extra checks per kind, run after fields are parsed (aliases of the output columns).
_CHECKS = {
    "approvals": [
        "WHEN kind NOT IN ('standard', 'break_glass') THEN 'invalid kind: ' || kind || "
        "' (standard or break_glass)'",
        "WHEN status NOT IN ('approved', 'revoked', 'denied') THEN 'invalid status: ' || status "
        "|| ' (approved, revoked or denied)'",
        "WHEN end_ts < start_ts THEN 'end before start'",
        "WHEN status = 'revoked' AND revoked_at IS NULL THEN 'status revoked without revoked_at'",
    ],
    "tickets": [
        f"WHEN status NOT IN ({_STATUSES}) THEN 'invalid ticket status: ' || status",
        "WHEN closed < opened THEN 'closed before opened'",
        "WHEN planned_end < planned_start THEN 'planned_end before planned_start'",
    ],
    "ticket_history": [f"WHEN status NOT IN ({_STATUSES}) THEN 'invalid ticket status: ' || status"],
    "activity": ["WHEN outcome NOT IN ('success', 'failure', 'unknown') THEN 'invalid outcome: ' "
                 "|| outcome || ' (success, failure or unknown)'"],
    "identities": ["WHEN kind NOT IN ('human', 'service') THEN 'invalid kind: ' || kind "
                   "|| ' (human or service)'"],
    "targets": ["WHEN alias IS NULL AND grp IS NULL THEN 'targets row needs an alias or a group'"],
    "approvers": ["WHEN len(list_filter(kinds, lambda k: k NOT IN ('standard', 'break_glass'))) > 0 "
                  "THEN 'invalid kinds: ' || array_to_string(kinds, '; ') "
                  "|| ' (standard and/or break_glass)'"],
}

_DEFAULTS = {("approvals", "kind"): "standard", ("approvals", "status"): "approved",
             ("identities", "kind"): "human"}
_LOWER = {("identities", "kind"), ("approvals", "kind"), ("approvals", "status"), ("tickets", "status"),
          ("ticket_history", "status"), ("activity", "outcome")}


def _clean(kind: str, field: str) -> str:
    """SQL for a text field: trimmed, empty -> NULL, defaults and case applied."""
    expr = nonblank_sql(f"f_{field}")
    if (kind, field) in _LOWER:
        expr = f"lower({expr})"
    if (kind, field) in _DEFAULTS:
        expr = f"coalesce({expr}, '{_DEFAULTS[(kind, field)]}')"
    return expr


def mapping_sql(kind: str, source_sql: str, dst: str | None = None) -> str:
    """SELECT turning `source_sql` (line, raw, parse_error, f_<field> text) into staged rows.

    `dst`: which of two instants a local time a DST change makes ambiguous or non-existent
    reads as (connectors.base.dst_of); None quarantines such times.

    Each timestamp is parsed once (inner SELECT); the reason is derived from the results.
    """
    spec = SPEC[kind]
    cols, problems = [], []
    for field, column, required, is_ts in spec:
        if is_ts:
            cols.append(f"{ts_sql('f_' + field, dst)} AS {column}")
            given = "" if required else f"{nonblank_sql('f_' + field)} IS NOT NULL AND "
            problems.append(f"WHEN {given}{column} IS NULL "
                            f"THEN {ts_problem_sql('f_' + field, field)}")
        elif (kind, field) in (("tickets", "components"), ("approvers", "kinds")):
            # "web-01; db-*" -> ['web-01', 'db-*']; kinds in lower case
            item = "lower(trim(c))" if field == "kinds" else "trim(c)"
            cols.append(f"CASE WHEN nullif(trim(f_{field}), '') IS NOT NULL THEN list_filter("
                        f"list_transform(string_split(f_{field}, ';'), lambda c: {item}), "
                        f"lambda c: c <> '') END AS {column}")
        else:
            cols.append(f"{_clean(kind, field)} AS {column}")
            if required:
                problems.append(f"WHEN {column} IS NULL THEN 'missing required field: {field}'")
    if kind == "activity":
        # No event_id: a stable id from the record's content, so re-ingest is idempotent.
        # A missing value hashes as an empty one in its place (as a CSV's empty cell does), so
        # a value in another field never gives the same id; outcome only when given, so a
        # record without one keeps the id it had before outcome existed (content_id_sql).
        cols[0] = (f"coalesce({nonblank_sql('f_event_id')}, "
                   + content_id_sql(["f_ts", "f_account", "f_target", "f_action", "f_detail",
                                     "f_session_id", "f_actor"], [nonblank_sql("f_outcome")])
                   + ") AS event_id")
    checks = " ".join(_CHECKS[kind])
    names = ", ".join(c for _, c, _, _ in spec)
    return (
        f"SELECT line, raw, CASE WHEN parse_error IS NOT NULL THEN parse_error "
        f"{' '.join(problems)} {checks} END AS reason, {names} FROM ("
        f"  SELECT line, raw, parse_error, f_{', f_'.join(f for f, *_ in spec)}, "
        f"  {', '.join(cols)} FROM ({source_sql}) src_rows)"
    )


def _json_fast_sql(kind: str) -> str:
    fields = [f for f, *_ in SPEC[kind]]
    columns = "{" + ", ".join(f"'{f}': 'VARCHAR'" for f in fields) + "}"
    select = ", ".join(f'"{f}" AS f_{f}' for f in fields)
    # raw stays NULL here: any quarantined row makes the store re-read with the exact path.
    # line too: the store numbers the rows (Staged.number_lines).
    return (f"SELECT NULL::BIGINT AS line, NULL::VARCHAR AS raw, NULL::VARCHAR AS parse_error, "
            f"{select} FROM read_json($path, format='newline_delimited', columns={columns}, "
            f"maximum_object_size=16777216)")


def _json_exact_sql(kind: str, decoded: bool = False) -> str:
    """Every JSON line by its physical line (from $path, or `decoded` from the frame `src` of
    connectors.jsonsql.decoded_lines: a file with bytes that are not UTF-8)."""
    fields = [f for f, *_ in SPEC[kind]]
    paths = "[" + ", ".join(f"'$.\"{f}\"'" for f in fields) + "]"
    select = ", ".join(f"j[{i + 1}] AS f_{f}" for i, f in enumerate(fields))
    return (
        "SELECT line, raw, CASE WHEN bad IS NOT NULL THEN bad "
        "WHEN NOT json_valid(raw) THEN 'invalid JSON' "
        "WHEN json_type(raw::JSON) <> 'OBJECT' THEN 'JSON value is not an object' END "
        f"AS parse_error, {select} FROM ("
        f"  SELECT line, raw, bad, CASE WHEN bad IS NULL AND json_valid(raw) "
        f"  AND json_type(raw::JSON) = 'OBJECT' THEN json_extract_string(raw, {paths}) END AS j "
        f"  FROM ({lines_sql(MAX_OBJECT, decoded)}) WHERE raw IS NOT NULL AND trim(raw) <> '')"
    )


def _open_text(path: Path):
    # surrogateescape: a byte that is not UTF-8 becomes a lone surrogate, found per record
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8-sig", newline="",
                                errors="surrogateescape")
    return open(path, encoding="utf-8-sig", newline="", errors="surrogateescape")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _not_utf8(rec: list[str]) -> str | None:
    """Why a CSV record's text is unusable: the first byte that is not UTF-8 (None if none)."""
    for text in rec:
        m = _SURROGATE.search(text)
        if m:
            return (f"invalid UTF-8: byte 0x{ord(m.group()) - 0xdc00:02x} in field "
                    f"{rec.index(text) + 1} (shown as U+FFFD)")
    return None


def _fffd(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _csv_frame(path: Path, kind: str) -> pd.DataFrame:
    """Every CSV record with its physical line; short/long rows get a parse_error."""
    fields = [f for f, *_ in SPEC[kind]]
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return pd.DataFrame(columns=["line", "raw", "parse_error"] + [f"f_{f}" for f in fields])
            header = _checked_header([_fffd(h) for h in header], kind, path)
            index = {h: i for i, h in enumerate(header)}
            rows = []
            start = reader.line_num + 1
            for rec in reader:
                line, start = start, reader.line_num + 1
                if not rec or (len(rec) == 1 and not rec[0].strip()):
                    continue
                error = None
                if len(rec) != len(header):
                    error = f"expected {len(header)} fields, found {len(rec)}"
                bad = _not_utf8(rec)
                if bad:
                    error, rec = bad, [_fffd(v) for v in rec]
                raw = ",".join(rec)
                values = [rec[index[f]] if f in index and index[f] < len(rec) else None
                          for f in fields]
                rows.append([line, raw, error] + values)
    except csv.Error as exc:
        raise InputError(f"CSV error: {exc}", str(path), reader.line_num) from None
    return pd.DataFrame(rows, columns=["line", "raw", "parse_error"] + [f"f_{f}" for f in fields],
                        dtype=object)


def _csv_header(path: Path, kind: str) -> list[str]:
    """The header's field names (stripped, lower case); InputError when a required one lacks."""
    try:
        with _open_text(path) as fh:
            header = next(csv.reader(fh), None)
    except csv.Error as exc:
        raise InputError(f"CSV error: {exc}", str(path), 1) from None
    return _checked_header([_fffd(h) for h in header], kind, path) if header else []


def _checked_header(header: list[str], kind: str, path: Path) -> list[str]:
    """The field names stripped and in lower case; InputError when a required one lacks."""
    header = [h.strip().lower() for h in header]
    missing = [f for f, _, req, _ in SPEC[kind] if req and f not in header]
    if missing:
        raise InputError(f"header lacks required column(s) {', '.join(missing)} "
                         f"for kind {kind}; header is: {', '.join(header)}", str(path), 1)
    return header


def _csv_fast_sql(kind: str, header: list[str]) -> str:
    """Every CSV record read by DuckDB, fields by header position; `line` numbered by the store.

    Only right when every record is one physical line: a field holding a line break stops the
    statement (error()), and so does a record with the wrong number of fields (strict mode);
    the store then takes the exact reader (_csv_frame), as it does for blank lines.
    """
    index = {h: i for i, h in enumerate(header)}
    cols = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
    fields = [f for f, *_ in SPEC[kind]]
    select = ", ".join(f"coalesce(c{index[f]}, '') AS f_{f}" if f in index  # as csv does
                       else f"NULL::VARCHAR AS f_{f}"
                       for f in fields)
    breaks = " OR ".join(f"contains(c{i}, chr(10)) OR contains(c{i}, chr(13))"
                         for i in range(len(header)))
    return (f"SELECT NULL::BIGINT AS line, NULL::VARCHAR AS raw, CASE WHEN {breaks} THEN "
            f"error('pamcorr: a record spans lines') END AS parse_error, {select} "
            f"FROM read_csv($path, header=false, skip=1, columns={cols}, delim=',', quote='\"', "
            f"escape='\"', auto_detect=false, strict_mode=true, null_padding=false)")


def _parquet_sql(kind: str, with_raw: bool = False) -> str:
    """Every row of a Parquet file ($path), the contract's columns as text (a column the file
    lacks is NULL: UNION BY NAME against an empty row of them); the store numbers the rows.
    `with_raw`: the row as JSON in `raw` (for quarantined rows; the fast path leaves it NULL)."""
    fields = [f for f, *_ in SPEC[kind]]
    empty = ", ".join(f'NULL AS "{f}"' for f in fields)
    # A typed timestamp is written as ISO 8601 UTC text, the form ts_sql parses first and
    # cheapest (its plain text, '2026-01-05 10:00:00+00', took the slower regexp branch: 1.7x);
    # typeof() is fixed per column, so only that branch runs.
    select = ", ".join(
        f"CASE WHEN typeof(\"{f}\") = 'TIMESTAMP WITH TIME ZONE' THEN strftime(TRY_CAST(\"{f}\" "
        f"AS TIMESTAMPTZ), '%Y-%m-%dT%H:%M:%S.%fZ') ELSE CAST(\"{f}\" AS VARCHAR) END AS f_{f}"
        if is_ts else f'CAST("{f}" AS VARCHAR) AS f_{f}'
        for f, _, _, is_ts in SPEC[kind])
    raw = "to_json(r)::VARCHAR" if with_raw else "NULL::VARCHAR"
    return (f"SELECT NULL::BIGINT AS line, {raw} AS raw, NULL::VARCHAR AS parse_error, {select} "
            f"FROM (SELECT * FROM (SELECT {empty} LIMIT 0) UNION ALL BY NAME "
            f"SELECT * FROM read_parquet($path)) r")


def is_parquet(path: Path) -> bool:
    """A Parquet file by its name (.parquet, .parq, .pq)."""
    return path.name.lower().endswith((".parquet", ".parq", ".pq"))


def _is_jsonl(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith((".jsonl", ".ndjson", ".json"))


class GenericConnector:
    """CSV or JSON-lines in pamcorr's own documented columns."""

    name = "generic"
    kinds = ("approvals", "tickets", "ticket_history", "activity", "identities", "targets",
             "approvers")
    description = ("pamcorr's generic CSV/JSON-lines/Parquet contract (approvals, tickets, ticket_history, "
                   "activity, identities, targets, approvers)")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        if kind not in SPEC:
            raise InputError(f"generic connector has no kind {kind!r}; choose one of "
                             f"{', '.join(SPEC)}")
        params, dst = {"tz": options.tz}, dst_of(options)
        if is_parquet(path):
            exact = Staged(kind, sql=mapping_sql(kind, _parquet_sql(kind, True), dst),
                           params={**params, "path": str(path)}, number_lines=True)
            return [Staged(kind, sql=mapping_sql(kind, _parquet_sql(kind), dst),
                           params={**params, "path": str(path)}, exact=exact, number_lines=True)]
        if _is_jsonl(path):
            decoded = decoded_staged(kind, mapping_sql(kind, _json_exact_sql(kind, True), dst),
                                     path, params)
            exact = Staged(kind, sql=mapping_sql(kind, _json_exact_sql(kind), dst),
                           params={**params, "path": str(path)}, exact=decoded)
            return [Staged(kind, sql=mapping_sql(kind, _json_fast_sql(kind), dst),
                           params={**params, "path": str(path)}, exact=exact,
                           number_lines=True, skips_blank_lines=True)]
        exact = Staged(kind, sql=mapping_sql(kind, "SELECT * FROM src", dst), params=params,
                       frame=lambda: _csv_frame(path, kind))
        header = _csv_header(path, kind)
        if not header:
            return [exact]
        return [Staged(kind, sql=mapping_sql(kind, _csv_fast_sql(kind, header), dst),
                       params={**params, "path": str(path)}, exact=exact, number_lines=True,
                       first_line=2, skips_blank_lines=True)]
