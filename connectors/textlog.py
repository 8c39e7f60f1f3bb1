"""Helpers shared by the connectors that parse line formats in Python (syslog, auditd, cyberark,
pim): reading lines (.gz too), building staged frames, years for year-less timestamps, zones."""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence
from zoneinfo import ZoneInfo

import pandas as pd

from connectors.base import (
    OPTIONAL_COLUMNS, TABLE_COLUMNS, TS_MAX, TS_MIN, TS_RANGE, Options, Staged, quarantine_not_utf8,
    ts_problem,
)

_SQL_TYPES = {"ts": "TIMESTAMPTZ", "start_ts": "TIMESTAMPTZ", "end_ts": "TIMESTAMPTZ",
              "revoked_at": "TIMESTAMPTZ", "read_only": "BOOLEAN", "line": "BIGINT",
              "targets": "VARCHAR[]"}


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without the line end) for every line of a text or .gz file.

    Lines end at '\\n' only: auditd's enriched format puts '\\x1d' inside a line, which
    str.splitlines() would treat as a line break. Bad UTF-8 is replaced by U+FFFD (the record
    is then quarantined: staged_frames), never fatal; a UTF-8 byte order mark is dropped.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="\n") as fh:
        for n, text in enumerate(fh, 1):
            yield n, text.rstrip("\r\n")


def staged_frames(rows: dict[str, list[dict]], hidden: dict[str, tuple] | None = None
                  ) -> list[Staged]:
    """One DataFrame-backed Staged per table that has rows (columns cast explicitly in SQL).

    `hidden` names extra VARCHAR columns per table that the SELECT also yields, for a
    connector's own SQL wrapped around it (connectors/syslog.py links sessions so); the store
    never sees them."""
    out = []
    for table, records in rows.items():
        if not records:
            continue
        cols = (("line", "raw", "reason") + TABLE_COLUMNS.get(table, ())
                + tuple(OPTIONAL_COLUMNS.get(table, {})))
        extra = (hidden or {}).get(table, ())
        frame = pd.DataFrame(records, columns=list(cols + extra))
        quarantine_not_utf8(frame)
        for c in cols:
            if _SQL_TYPES.get(c) == "TIMESTAMPTZ":
                frame[c] = pd.to_datetime(frame[c], utc=True)
                # a last guard (connectors check as they parse): nothing outside the range
                # every output renders is stored
                bad = frame[c].notna() & ((frame[c] < TS_MIN) | (frame[c] > TS_MAX))
                if bad.any():
                    frame.loc[bad & frame["reason"].isna(), "reason"] = (
                        f"{c} out of range ({TS_RANGE})")
                    frame.loc[bad, c] = pd.NaT
        select = ", ".join(f'CAST("{c}" AS {_SQL_TYPES.get(c, "VARCHAR")}) AS "{c}"'
                           for c in cols + extra)
        out.append(Staged(table, sql=f"SELECT {select} FROM src", frame=frame))
    return out


def ignored_row(line: int, raw: str, event_type: str) -> dict:
    """A well-formed record that carries nothing pamcorr uses."""
    return {"line": line, "raw": raw, "reason": None, "event_type": event_type}


def quarantined_row(line: int, raw: str, reason: str) -> dict:
    return {"line": line, "raw": raw, "reason": reason}


def attrs_json(values: dict) -> str | None:
    """JSON text of the non-empty values (attrs is stored as-is: never put secrets here)."""
    kept = {k: v for k, v in values.items() if v not in (None, "", [], {})}
    return json.dumps(kept, sort_keys=True, default=str) if kept else None


def zone_of(options: Options) -> ZoneInfo | None:
    return ZoneInfo(options.tz) if options.tz else None


def assign_years(months: Sequence[int | None], path: Path,
                 options: Options) -> tuple[list[int | None], str]:
    """Years for year-less timestamps in file order (None entries are skipped); and the rule used."""
    known = [m for m in months if m is not None]
    if not known:
        return [None] * len(months), ""
    rollovers, prev = 0, None
    for m in known:
        if prev is not None and m <= prev - 6:
            rollovers += 1
        prev = m
    if options.year:
        year, rule = options.year, "option"
    else:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, zone_of(options) or timezone.utc)
        last_year = mtime.year - 1 if known[-1] > mtime.month else mtime.year
        year, rule = last_year - rollovers, "mtime"
    out, prev = [], None
    for m in months:
        if m is None:
            out.append(None)
            continue
        if prev is not None and m <= prev - 6:
            year += 1
        prev = m
        out.append(year)
    return out, rule


_BAD_YEAR = re.compile(r"[+-]|0000-|[0-9]{5,}-")


def parse_iso(text: str, tz: ZoneInfo | None) -> tuple[datetime | None, str | None]:
    """(UTC datetime, None) or (None, why not) for an ISO 8601 timestamp in TS_MIN..TS_MAX."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip())   # fromisoformat takes microseconds
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        if _BAD_YEAR.match(text):      # a year Python cannot hold: 0000, 10000, -2024
            return None, f"timestamp out of range ({TS_RANGE}): {text[:60]}"
        return None, f"unparseable timestamp: {text[:60]}"
    if value.tzinfo is None:
        if tz is None:
            return None, f"timestamp without time zone: {text} (set the source zone with --tz)"
        value = value.replace(tzinfo=tz)
    try:
        value = value.astimezone(timezone.utc)
    except (OverflowError, ValueError):   # 9999-12-31T23:00-05:00 is in the year 10000
        return None, f"timestamp out of range ({TS_RANGE}): {text[:60]}"
    problem = ts_problem(value, text)
    return (None, problem) if problem else (value, None)


MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
BSD_TS = r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
