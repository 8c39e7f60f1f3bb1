"""The ingest log: the one place that writes `ingest_log`, and what it is asked before a file
is read (seen before? grown since? which options did its first ingest use?).

Every strategy (one-pass, staged, many files) ends a file the same way: one `Entry` per file,
written by `record` in the transaction that stored the file's rows, so a file is logged if and
only if its rows are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from connectors.base import Options
from correlate.ingest.base import FileResult, Tail, scalar

# Finished ingests of this content by this source and kind: the file is skipped.
SEEN_SQL = ("SELECT count(*) FROM ingest_log WHERE sha256 = ? AND source = ? AND kind = ? "
            "AND finished IS NOT NULL")
# The same name and size ingested before: worth waiting for the hash before reading.
LIKELY_SEEN_SQL = ("SELECT count(*) FROM ingest_log WHERE size_bytes = ? AND file = ? "
                   "AND source = ? AND kind = ? AND finished IS NOT NULL")
KNOWN_SQL = ("SELECT sha256 FROM ingest_log WHERE source = ? AND kind = ? "
             "AND finished IS NOT NULL")
# The file as last ingested, when it was smaller: a prefix of it now if it only grew.
GROWN_SQL = ("SELECT sha256, size_bytes FROM ingest_log WHERE source = ? AND kind = ? "
             "AND file = ? AND finished IS NOT NULL AND size_bytes < ? "
             "ORDER BY size_bytes DESC LIMIT 1")
# The file's earlier ingests: the same name (a grown file has one per tail it read) or the same
# content under another name.
PRIOR_SQL = ("SELECT ingest_id FROM ingest_log WHERE source = ? AND kind = ? "
             "AND (file = ? OR sha256 = ?) ORDER BY ingest_id")
REJECTED_SQL = ("SELECT ingest_id FROM ingest_log WHERE source = ? AND kind = ? AND file = ? "
                "AND sha256 = ? AND accepted = 0 AND quarantined = read AND read > 0")
FIRST_OPTIONS_SQL = ("SELECT options FROM ingest_log WHERE source = ? AND kind = ? "
                     "AND sha256 = ? AND finished IS NOT NULL ORDER BY ingest_id LIMIT 1")
NEXT_ID_SQL = "SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log"

RECORD_SQL = """
INSERT INTO ingest_log (ingest_id, source, kind, file, sha256, size_bytes, read, accepted,
                        quarantined, duplicates, ignored, started, finished, offset_bytes,
                        first_line, options, warnings)
SELECT unnest($ids::INTEGER[]), unnest($sources::VARCHAR[]), unnest($kinds::VARCHAR[]),
       unnest($files::VARCHAR[]), unnest($shas::VARCHAR[]), unnest($sizes::BIGINT[]),
       unnest($reads::BIGINT[]), unnest($accepted::BIGINT[]), unnest($quarantined::BIGINT[]),
       unnest($duplicates::BIGINT[]), unnest($ignored::BIGINT[]),
       unnest($started::TIMESTAMPTZ[]), unnest($finished::TIMESTAMPTZ[]),
       unnest($offsets::BIGINT[]), unnest($first_lines::BIGINT[]), unnest($options::VARCHAR[]),
       unnest($warnings::VARCHAR[])
"""


@dataclass(frozen=True)
class Entry:
    """One ingest_log row: a file's counts, where its read began, the options it ran with."""

    ingest_id: int
    result: FileResult
    size: int
    started: datetime
    finished: datetime
    options: str | None
    tail: Tail = Tail()

# `pamcorr watch` (correlate/watch/state.py): a spooled chunk's rows are filed under the followed
# file (its name, running sha256, size, offset and first line), so a later ingest of that file
# skips what watch read; a chunk that brought no row is still marked as read.
MOVE_CHUNK_SQL = ("UPDATE ingest_log SET file = ?, sha256 = ?, size_bytes = ?, offset_bytes = ?, "
                  "first_line = ? WHERE ingest_id = ?")
MARK_FOLLOWED_SQL = (
    "INSERT INTO ingest_log (ingest_id, source, kind, file, sha256, size_bytes, read, accepted, "
    "quarantined, duplicates, ignored, started, finished, offset_bytes, first_line) "
    "SELECT coalesce(max(ingest_id), 0) + 1, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, ?, ?, ?, ? "
    "FROM ingest_log RETURNING ingest_id")


def move_chunk(con, ingest_id: int, file: str, sha256: str, size: int, offset: int,
               first_line: int) -> None:
    con.execute(MOVE_CHUNK_SQL, [file, sha256, size, offset, first_line, ingest_id])


def mark_followed(con, source: str, kind: str, file: str, sha256: str, size: int, now,
                  offset: int, first_line: int) -> None:
    con.execute(MARK_FOLLOWED_SQL, [source, kind, file, sha256, size, now, now, offset,
                                    first_line]).fetchall()


def next_id(con) -> int:
    """The ingest_id the next file gets (inside the transaction that will log it)."""
    return scalar(con, NEXT_ID_SQL)


def record(con, entries: list[Entry]) -> None:
    """Write one finished ingest_log row per entry, in one statement."""
    if not entries:
        return
    r = [e.result for e in entries]
    con.execute(RECORD_SQL, {
        "ids": [e.ingest_id for e in entries], "sources": [x.source for x in r],
        "kinds": [x.kind for x in r], "files": [x.file for x in r],
        "shas": [x.sha256 for x in r], "sizes": [e.size for e in entries],
        "reads": [x.read for x in r], "accepted": [x.accepted for x in r],
        "quarantined": [x.quarantined for x in r], "duplicates": [x.duplicates for x in r],
        "ignored": [x.ignored for x in r], "started": [e.started for e in entries],
        "finished": [e.finished for e in entries],
        "offsets": [e.tail.offset for e in entries],
        "first_lines": [e.tail.lines + 1 for e in entries],
        "options": [e.options for e in entries],
        "warnings": ["\n".join(x.warnings) or None for x in r]})


def forget(con, ids: list[int]) -> None:
    """Delete the log rows of these ingests (their data rows: reingest.remove)."""
    con.execute("DELETE FROM ingest_log WHERE list_contains($ids::INTEGER[], ingest_id)",
                {"ids": [int(i) for i in ids]})


def seen(con, digest: str, source: str, kind: str) -> bool:
    return bool(scalar(con, SEEN_SQL, [digest, source, kind]))


def likely_seen(con, size: int, path: str, source: str, kind: str) -> bool:
    return bool(scalar(con, LIKELY_SEEN_SQL, [size, path, source, kind]))


def known(con, source: str, kind: str) -> frozenset:
    """The sha256 of every file this source and kind finished."""
    return frozenset(sha for (sha,) in con.execute(KNOWN_SQL, [source, kind]).fetchall())


def last_smaller(con, source: str, kind: str, path: str, size: int):
    """(sha256, size) of the file's latest ingest when it was smaller than `size`, or None."""
    rows = con.execute(GROWN_SQL, [source, kind, path, size]).fetchall()
    return rows[0] if rows else None


def prior_ingests(con, source: str, kind: str, file: str, sha256: str) -> list[int]:
    return [i for (i,) in con.execute(PRIOR_SQL, [source, kind, file, sha256]).fetchall()]


def rejected_ids(con, r: FileResult) -> list[int]:
    return [i for (i,) in con.execute(REJECTED_SQL, [r.source, r.kind, r.file, r.sha256])
            .fetchall()]


def options_json(options: Options) -> str:
    """The options an ingest ran with, as stored in ingest_log.options (schema 023)."""
    return json.dumps({"tz": options.tz, "year": options.year,
                       "extra": {k: str(v) for k, v in sorted((options.extra or {}).items())}},
                      sort_keys=True)


def _flags(stored: dict) -> list[str]:
    out = [f"--tz {stored['tz']}" if stored.get("tz") else "no --tz",
           f"--year {stored['year']}" if stored.get("year") else "no --year"]
    out += [f"--option {k}={v}" for k, v in sorted((stored.get("extra") or {}).items())]
    return out


def options_note(con, source: str, kind: str, sha256: str, options: Options) -> str | None:
    """For a file skipped as already ingested: a note when its first ingest ran with other
    options, naming --reingest; None when they are the same or were not recorded."""
    rows = con.execute(FIRST_OPTIONS_SQL, [source, kind, sha256]).fetchall()
    row = rows[0] if rows else None
    if not row or row[0] is None:
        return None
    first, now = json.loads(row[0]), json.loads(options_json(options))
    if first == now:
        return None
    then_flags, now_flags = _flags(first), _flags(now)
    was = [f for f in then_flags if f not in now_flags]
    new = [f for f in now_flags if f not in then_flags]
    return (f"its first ingest ran with other options ({', '.join(was) or 'none'}; now "
            f"{', '.join(new) or 'none'}): add --reingest to replace its rows")


def skipped(con, path, source: str, kind: str, digest: str, options: Options) -> FileResult:
    """The result of a file whose content this source and kind ingested before."""
    return FileResult(str(path), source, kind, digest, skipped=True,
                      note=options_note(con, source, kind, digest, options))
