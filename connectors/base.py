"""The small interface every connector implements, and shared timestamp parsing in SQL.

A connector never opens the database. It hands the store a `Staged` batch per
table: either a SELECT (run by the store, so big files are parsed by DuckDB's
readers) or a pandas DataFrame. Either way the batch has the table's columns
plus `line` (1-based line in the file), `reason` (NULL when the row is good,
else why it is quarantined) and `raw` (the record as read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from correlate.errors import InputError

# Columns of each table a connector fills (the store adds ids and bookkeeping).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "approvals": ("approval_id", "account", "target", "start_ts", "end_ts", "ticket",
                  "requester", "approver", "kind", "status", "revoked_at"),
    "tickets": ("ticket_id", "status", "opened", "closed", "planned_start", "planned_end",
                "assignee"),
    "ticket_history": ("ticket_id", "ts", "status"),
    "activity": ("event_id", "ts", "account", "target", "action", "detail", "session_id",
                 "actor"),
}

# Columns a connector may stage beyond TABLE_COLUMNS: staged name -> table column. A staged
# `reason` is why the row is quarantined, so an approval's justification is `approval_reason`.
OPTIONAL_COLUMNS: dict[str, dict[str, str]] = {
    "activity": {c: c for c in ("approval_ref", "actor_kind", "read_only", "attrs", "outcome")},
    "approvals": {"approval_reason": "reason", "targets": "targets"},
    "tickets": {c: c for c in ("reporter", "title", "components", "system", "url", "work_start",
                               "work_end")},
    "ignored": {"event_type": "event_type"},
}

TICKET_STATUSES = ("requested", "approved", "in_progress", "resolved", "closed", "cancelled",
                   "rejected")


@dataclass
class Options:
    """Per-ingest options a user can set on the command line or in the config."""

    tz: str | None = None          # zone for timestamps that carry none
    year: int | None = None        # for year-less syslog timestamps
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.tz is not None:
            try:
                ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise InputError(f"unknown time zone {self.tz!r} (use an IANA name such as "
                                 f"Europe/Berlin or UTC)") from None


@dataclass
class Staged:
    """Rows parsed from one file for one table: SQL for the store to run, or a DataFrame."""

    table: str
    sql: str | None = None
    params: dict = field(default_factory=dict)
    frame: object | None = None   # pandas.DataFrame
    # When the fast SQL path cannot give exact line numbers for quarantined rows,
    # the store re-stages with this exact (slower) path.
    exact: "Staged | None" = None
    # The SQL yields line = NULL and the store numbers rows in file order itself (a window
    # function would serialise the parallel reader). For one-record-per-line input only.
    number_lines: bool = False
    # The line of the first row when the store numbers them (2 in a CSV file after its header).
    first_line: int = 1
    # The fast SQL reads one record per line with a reader that skips blank lines, so its row
    # positions are line numbers only when the file has none: the store checks and re-reads
    # such a file with `exact`.
    skips_blank_lines: bool = False
    # Reading only what was appended since the file's last ingest gives the rows reading the
    # whole file would add: one record a line, none depending on an earlier line (a grown file
    # is then read from where it was left; see correlate/ingest/plan.py _grown).
    tail_safe: bool = False


class Connector(Protocol):
    """What the registry holds."""

    name: str
    kinds: tuple[str, ...]
    description: str

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        """Parse `path` (of `kind`) into staged batches; raise InputError for unusable files."""


_ZONE_RE = r"[0-9]T?[0-9:.,]* ?[+-][0-9]{2}(:?[0-9]{2})?$"
_NAIVE_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?"

# The timestamps a record may carry: 1970-01-01T00:00:00Z up to (not including) the year 10000.
# Every output renders these (Python datetime, pandas, CSV, HTML); anything else is quarantined
# ("out of range"), so one bad record cannot break `findings`, reports or exports for the store.
TS_MIN = datetime(1970, 1, 1, tzinfo=timezone.utc)
TS_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
TS_RANGE = "years 1970 to 9999"
_LO = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
_HI = "TIMESTAMPTZ '10000-01-01 00:00:00+00'"
_MS_HI = 253402300800000     # epoch milliseconds of 10000-01-01T00:00:00Z


def _ranged(expr: str) -> str:
    """`expr` (TIMESTAMPTZ) when in TS_MIN..TS_MAX, else NULL; `expr` written once (a CASE
    naming it twice cost 35% more CPU on the offset branch: measured)."""
    return f"list_filter([{expr}], lambda t: t >= {_LO} AND t < {_HI})[1]"


DST_CHOICES = ("earlier", "later")


def _local_sql(naive: str, dst: str | None) -> str:
    """SQL: the TIMESTAMPTZ of wall-clock time `naive` (a TIMESTAMP expression) in zone $tz, or
    NULL when that time occurs twice (DST fall-back) or never (spring-forward) and `dst` (earlier
    | later: the earlier or later of the two UTC instants the offsets before and after the change
    give) does not pick one. The offsets a day before and a day after give the two candidates; a
    candidate that does not read back as `naive` in $tz is not one."""
    off = ("(timezone($tz, timezone('UTC', {l}) {op} INTERVAL 1 DAY) - ({l} {op} INTERVAL 1 DAY))")
    a = f"timezone('UTC', {naive} - {off.format(l=naive, op='-')})"
    b = f"timezone('UTC', {naive} - {off.format(l=naive, op='+')})"
    pick = {"earlier": f"least({a}, {b})", "later": f"greatest({a}, {b})"}.get(dst, "NULL")
    return (f"(CASE WHEN {a} = {b} THEN {a} "
            f"WHEN timezone($tz, {a}) = {naive} AND timezone($tz, {b}) = {naive} THEN {pick} "
            f"WHEN timezone($tz, {a}) = {naive} THEN {a} "
            f"WHEN timezone($tz, {b}) = {naive} THEN {b} ELSE {pick} END)")


def _local_problem_sql(naive: str) -> str:
    """SQL: 'ambiguous' / 'non-existent' for a wall-clock time in $tz a DST change makes so."""
    off = ("(timezone($tz, timezone('UTC', {l}) {op} INTERVAL 1 DAY) - ({l} {op} INTERVAL 1 DAY))")
    a = f"timezone('UTC', {naive} - {off.format(l=naive, op='-')})"
    b = f"timezone('UTC', {naive} - {off.format(l=naive, op='+')})"
    return (f"(CASE WHEN {a} = {b} THEN NULL "
            f"WHEN timezone($tz, {a}) = {naive} AND timezone($tz, {b}) = {naive} "
            f"THEN 'ambiguous' "
            f"WHEN timezone($tz, {a}) <> {naive} AND timezone($tz, {b}) <> {naive} "
            f"THEN 'non-existent' END)")


def dst_of(options: "Options") -> str | None:
    """The source config's choice for local times a DST change makes ambiguous or non-existent
    (`--option dst=earlier|later`), else None (such times are quarantined)."""
    value = (options.extra or {}).get("dst")
    if value is None or value == "":
        return None
    value = str(value).strip().lower()
    if value not in DST_CHOICES:
        raise InputError(f"option dst must be earlier or later, not {value!r}")
    return value


def local_to_utc(naive: datetime, tz: ZoneInfo,
                 dst: str | None = None) -> tuple[datetime | None, str | None]:
    """(UTC datetime, None) for a zone-less wall-clock time in `tz`, or (None, why not).

    A time a DST change makes occur twice ("ambiguous local time") or never ("non-existent
    local time") is refused unless `dst` says which to take: "earlier" or "later" of the two
    UTC instants the offsets before and after the change give. The same rule as the SQL reader
    (ts_sql with $tz), so every connector reads a local time alike.
    """
    text = naive.isoformat()
    try:
        first = naive.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
        second = naive.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    except (OverflowError, ValueError):        # 9999-12-31 23:00 in New York
        return None, f"timestamp out of range ({TS_RANGE}): {text} in {tz}"
    if first != second:
        exists = first.astimezone(tz).replace(tzinfo=None) == naive
        kind = "ambiguous" if exists else "non-existent"
        if dst not in DST_CHOICES:
            why = "occurs twice" if exists else "skipped"
            return None, (f"{kind} local time: {text} in {tz} ({why} at a DST change; "
                          f"--option dst=earlier|later picks one)")
        first = min(first, second) if dst == "earlier" else max(first, second)
    problem = ts_problem(first, text)
    return (None, problem) if problem else (first, None)


def naive_iso(text: str) -> datetime | None:
    """The wall-clock time of a zone-less ISO 8601 timestamp, else None (it has a zone, or is
    not ISO: the caller's own parser says why)."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(text).strip())
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is None else None


def ts_sql(col: str, dst: str | None = None) -> str:
    """SQL parsing text column `col` to TIMESTAMPTZ (NULL when it cannot, or when it is outside
    TS_MIN..TS_MAX).

    ISO 8601 with Z or an offset; epoch milliseconds (11 to 15 digits: 10 or fewer digits look
    like epoch seconds); a zone-less timestamp only when the named parameter $tz is set, and
    then not when a DST change makes it ambiguous or non-existent unless `dst` (earlier | later,
    a constant from connectors.base.dst_of, never free text) picks one. `col` is a constant
    column name from our own code, never user input.
    """
    c = f"trim({col})"
    return (
        # the common case first (ISO 8601 UTC): one cheap LIKE instead of trims and regexps;
        # its 4-digit year is the UTC year, so a text comparison keeps it in range
        f"(CASE WHEN {col} LIKE '____-__-__T%Z' THEN CASE WHEN {col} >= '1970' "
        f"THEN try_cast({col} AS TIMESTAMPTZ) END "
        f"WHEN {col} IS NULL OR {c} = '' THEN NULL "
        f"WHEN suffix({c}, 'Z') OR suffix({c}, 'z') "
        f"THEN {_ranged(f'try_cast({c} AS TIMESTAMPTZ)')} "
        # 15 digits compare as text: below 10000-01-01 in epoch milliseconds
        f"WHEN regexp_full_match({c}, '[0-9]{{11,15}}') AND (length({c}) < 15 OR {c} < "
        f"'{_MS_HI}') THEN timezone('UTC', make_timestamp(CAST({c} AS BIGINT) * 1000)) "
        f"WHEN regexp_matches({c}, '{_ZONE_RE}') AND regexp_matches({c}, '[0-9]{{2}}:[0-9]{{2}}') "
        f"THEN {_ranged(f'try_cast({c} AS TIMESTAMPTZ)')} "
        f"WHEN $tz IS NOT NULL AND regexp_full_match({c}, '{_NAIVE_RE}') "
        f"THEN {_ranged(_local_sql(f'try_cast({c} AS TIMESTAMP)', dst))} END)"
    )


def nonblank_sql(col: str) -> str:
    """SQL: text column `col` without surrounding spaces, NULL when empty (as nullif(trim(col),
    '')), trimming only values that need it: trim copies every string, which cost 1 s of CPU
    per column at 1e7 rows."""
    return (f"(CASE WHEN {col} LIKE ' %' OR {col} LIKE '% ' THEN nullif(trim({col}), '') "
            f"ELSE nullif({col}, '') END)")


def ts_problem_sql(col: str, label: str) -> str:
    """SQL giving why `col` did not parse (use where ts_sql(col) IS NULL)."""
    c = f"trim({col})"
    return (
        f"(CASE WHEN {col} IS NULL OR {c} = '' THEN 'missing required field: {label}' "
        f"WHEN regexp_full_match({c}, '[0-9]{{1,10}}') "
        f"THEN 'timestamp in {label} looks like epoch seconds (epoch milliseconds expected): ' "
        f"|| {c} "
        f"WHEN regexp_full_match({c}, '-?[0-9]+') "
        f"THEN 'timestamp in {label} out of range ({TS_RANGE}): ' || left({c}, 80) "
        f"WHEN $tz IS NULL AND regexp_full_match({c}, '{_NAIVE_RE}') "
        f"THEN 'timestamp without time zone in {label}: ' || {c} || ' (set the source zone with --tz)' "
        f"WHEN regexp_full_match({c}, '{_NAIVE_RE}') AND "
        f"{_local_problem_sql(f'try_cast({c} AS TIMESTAMP)')} IS NOT NULL "
        f"THEN {_local_problem_sql(f'try_cast({c} AS TIMESTAMP)')} || ' local time in {label}: ' "
        f"|| {c} || ' in ' || $tz || ' (a DST change; --option dst=earlier|later picks one)' "
        f"WHEN NOT (try_cast({c} AS TIMESTAMPTZ) >= {_LO} "
        f"AND try_cast({c} AS TIMESTAMPTZ) < {_HI}) "
        f"OR regexp_matches({c}, '^[+-]?[0-9]{{5,}}-') "
        f"THEN 'timestamp in {label} out of range ({TS_RANGE}): ' || left({c}, 80) "
        f"ELSE 'unparseable timestamp in {label}: ' || left({c}, 80) END)"
    )


def ts_problem(value: datetime | None, text: str) -> str | None:
    """Why a timestamp parsed in Python cannot be stored (None when it can)."""
    if value is not None and not TS_MIN <= value <= TS_MAX:
        return f"timestamp out of range ({TS_RANGE}): {text[:60]}"
    return None


NOT_UTF8 = "invalid UTF-8: bytes shown as U+FFFD"


def quarantine_not_utf8(frame) -> None:
    """Quarantine the rows of a Python connector's DataFrame whose `raw` holds U+FFFD (or its
    JSON escape): bytes that were not UTF-8, replaced when the file was read as text."""
    if len(frame):
        bad = frame["raw"].astype(str).str.contains("\ufffd|\\\\u[fF]{3}[dD]", regex=True)
        if bad.any():
            frame.loc[bad, "reason"] = NOT_UTF8     # the first cause of any other problem
