"""Load what a connector staged into the store: quarantine, de-duplicate, count, log the file."""

from __future__ import annotations

import gzip
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb

from connectors.base import OPTIONAL_COLUMNS, Options, Staged
from correlate.approvers import load_approvers
from correlate.clock import now_utc
from correlate.errors import InputError
from correlate.ingest_activity import NotDirect, load_direct, load_staged
from correlate.ingest_events import load_approval_events
from correlate.ingest_files import (expand_paths, head_of, is_gzip, literal_path, sha256_file,
                                    tail_copy)
from correlate.redact import redact_sql
from correlate.reingest import (describe, options_json, options_note, prior_ingests, remove,
                                row_counts)
from correlate.store import Store


@dataclass
class FileResult:
    """Counts for one file; read = accepted + ignored + quarantined + duplicates."""

    file: str
    source: str
    kind: str
    sha256: str
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    ignored: int = 0            # well-formed records of types pamcorr does not judge
    skipped: bool = False       # same sha256 ingested before
    reasons: dict = field(default_factory=dict)
    note: str | None = None     # why a skipped file may want --reingest (other options)
    replaced: str | None = None  # --reingest: what changed (`-N +M activity rows, ...`)
    warnings: list = field(default_factory=list)   # about the whole file (a connector's)
    rejected: bool = False      # every record quarantined: nothing of it kept, not recorded
    guess: str | None = None    # what a rejected file looks like (connectors.registry)

    @property
    def balanced(self) -> bool:
        return self.read == self.accepted + self.ignored + self.quarantined + self.duplicates


_BLANK_LINE = re.compile(rb"\n[ \t\r]*(?=\n)")


def has_blank_lines(path: Path) -> bool:
    """True when a blank (or whitespace-only) line comes before some record.

    DuckDB's JSON reader skips such lines, so after one, row positions are no longer line
    numbers. Blank lines at the very end precede no record and do not count.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    tail, pending = b"\n", False          # the file's start counts as a line start
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            if pending and chunk.strip():
                return True
            window = tail + chunk
            match = _BLANK_LINE.search(window)
            if match:
                if window[match.end():].strip():
                    return True
                pending = True
            tail = chunk[-64:]
    return False


def ingest(store: Store, connector, kind: str, paths: list[str], options: Options,
           progress=None, warn=None, reingest: bool = False,
           reject: bool = False) -> list[FileResult]:
    """Ingest files with one connector. Files already ingested (same sha256) are skipped, unless
    `reingest`: then each file's earlier rows are replaced in the transaction that loads it
    (correlate/reingest.py). `warn(message)` hears of files a folder holds that are not read
    (correlate/ingest_files.py `expand_paths`). `reject` (the CLI and the weekly run): a file no
    record of which was accepted is removed again and marked `rejected` (reject_unread)."""
    if kind is None:
        if len(connector.kinds) != 1 and "auto" not in connector.kinds:
            raise InputError(f"source {connector.name} needs --kind, one of "
                             f"{', '.join(connector.kinds)}")
        kind = "auto" if "auto" in connector.kinds else connector.kinds[0]
    if kind not in connector.kinds:
        raise InputError(f"source {connector.name} reads kinds {', '.join(connector.kinds)}, "
                         f"not {kind!r}")
    results = []
    files = expand_paths(paths, warn)
    if getattr(connector, "stage_arrays", None) is not None and not reingest:
        # Records files read many at a time, with this function's results (issue #3).
        from correlate.ingest_many import ingest_many
        last = store.scalar("SELECT coalesce(max(ingest_id), 0) FROM ingest_log")
        results = ingest_many(store, connector, kind, files, options, progress)
        # the grouped path logs no options: record them, and note skips with other ones
        store.con.execute("UPDATE ingest_log SET options = ? WHERE ingest_id > ? "
                          "AND options IS NULL", [options_json(options), last])
        for r in results:
            if r.skipped and r.note is None:
                r.note = options_note(store.con, r.source, r.kind, r.sha256, options)
        return reject_unread(store, results) if reject else results
    for n, path in enumerate(files, 1):
        if progress:
            progress(f"[{n}/{len(files)}] {path}")
        results.append(ingest_file(store, connector, kind, path, options, reingest))
    return reject_unread(store, results) if reject else results


REJECTED_IDS_SQL = ("SELECT ingest_id FROM ingest_log WHERE source = ? AND kind = ? AND file = ? "
                    "AND sha256 = ? AND accepted = 0 AND quarantined = read AND read > 0")


def reject_unread(store: Store, results: list[FileResult]) -> list[FileResult]:
    """A file of which every record was quarantined was fed to the wrong source (or is not a
    log at all): remove what its ingest stored, quarantine and log row included, so that it is
    not taken as done and a run with the right source reads it; say what it looks like."""
    from connectors.registry import guess_format
    for r in results:
        if r.skipped or r.read == 0 or r.accepted or r.quarantined != r.read:
            continue
        r.rejected, r.guess = True, guess_format(r.file)
        with store.transaction():
            ids = [i for (i,) in store.con.execute(
                REJECTED_IDS_SQL, [r.source, r.kind, r.file, r.sha256]).fetchall()]
            remove(store.con, ids)
    return results


SEEN_SQL = ("SELECT count(*) FROM ingest_log WHERE sha256 = ? AND source = ? AND kind = ? "
            "AND finished IS NOT NULL")
LIKELY_SEEN_SQL = ("SELECT count(*) FROM ingest_log WHERE size_bytes = ? AND file = ? AND source = ? "
                   "AND kind = ? AND finished IS NOT NULL")


def ingest_file(store: Store, connector, kind: str, path: Path, options: Options,
                reingest: bool = False) -> FileResult:
    """Ingest one file; a file that cannot be read (a cut or false .gz, an I/O error) is an
    InputError naming it, not a traceback. Nothing of it is stored then."""
    try:
        return _ingest_file(store, connector, kind, path, options, reingest)
    except (EOFError, OSError, zlib.error) as exc:   # gzip.BadGzipFile is an OSError
        raise InputError(f"cannot read: {exc or type(exc).__name__}", str(path)) from None


@dataclass(frozen=True)
class Tail:
    """Where reading a grown file begins: the end of its last ingest (byte, lines before)."""

    offset: int = 0
    lines: int = 0


# The file as last ingested, when it was smaller: a prefix of it now if it only grew.
GROWN_SQL = ("SELECT sha256, size_bytes FROM ingest_log WHERE source = ? AND kind = ? "
             "AND file = ? AND finished IS NOT NULL AND size_bytes < ? "
             "ORDER BY size_bytes DESC LIMIT 1")


def _one_record_a_line(batch: Staged) -> bool:
    """The batch reads one record per line, no header, no Python reader: a tail of the file
    is read as the same lines would be in the whole file."""
    return batch.tail_safe or (batch.skips_blank_lines and batch.first_line == 1
                               and batch.frame is None
                               and (batch.exact is None or batch.exact.frame is None))


def _grown(store: Store, source: str, kind: str, path: Path, size: int,
           staged: list[Staged]) -> Tail:
    """Tail(offset, lines) when `path` only grew since it was last ingested (the content
    logged then, ending at a line end, is its prefix): the old part is not read again."""
    if is_gzip(path) or not all(_one_record_a_line(b) for b in staged):
        return Tail()
    row = store.query(GROWN_SQL, [source, kind, str(path), size])
    if not row:
        return Tail()
    sha, old_size = row[0]
    head, lines, at_line_end = head_of(path, old_size)
    return Tail(old_size, lines) if head == sha and at_line_end else Tail()


def _skipped(store: Store, path: Path, source: str, kind: str, digest: str,
             options: Options) -> FileResult:
    return FileResult(str(path), source, kind, digest, skipped=True,
                      note=options_note(store.con, source, kind, digest, options))


def _ingest_file(store: Store, connector, kind: str, path: Path, options: Options,
                 reingest: bool = False) -> FileResult:
    con = store.con
    size = path.stat().st_size
    with ThreadPoolExecutor(max_workers=2) as pool, ExitStack() as scratch:
        # hashlib and DuckDB both release the GIL: hash while DuckDB parses, unless the same
        # file (name and size) was ingested before, when the hash decides first.
        hashing = pool.submit(sha256_file, path)
        if is_gzip(path):
            hashing.result()    # CRC-32 and expansion limit checked before anything reads it
        if not reingest and store.scalar(LIKELY_SEEN_SQL, [size, str(path), connector.name, kind]):
            if store.scalar(SEEN_SQL, [hashing.result(), connector.name, kind]):
                return _skipped(store, path, connector.name, kind, hashing.result(), options)
        staged = connector.stage(path, kind, options)
        warnings = [w for b in staged for w in getattr(b, "warnings", ())]
        # --reingest reads the whole file: its earlier tails are replaced with the rest
        tail = Tail() if reingest else _grown(store, connector.name, kind, path, size, staged)
        source = path
        if tail.offset:
            source = scratch.enter_context(tail_copy(path, tail.offset))
            staged = connector.stage(source, kind, options)
        literal = scratch.enter_context(literal_path(source))
        staged = [_read_as(batch, str(source), literal) for batch in staged]
        if (len(staged) == 1 and staged[0].table == "activity" and staged[0].number_lines
                and not reingest):
            result = _ingest_direct(store, connector.name, kind, path, size, staged[0],
                                    hashing, tail, options)
            if result is not None:
                return result
        blanks = (pool.submit(has_blank_lines, source)
                  if any(b.skips_blank_lines for b in staged) else None)
        # Parse first, outside the transaction: a failed fast read must not abort it.
        used = [_stage_batch(con, batch, f"stage_{i}", str(path))
                for i, batch in enumerate(staged)]
        if blanks is not None and blanks.result():
            # Row positions are not line numbers here: read those batches exactly.
            for i, batch in enumerate(staged):
                if used[i].skips_blank_lines and batch.exact is not None:
                    _stage(con, batch.exact, f"stage_{i}")
                    used[i] = batch.exact
        numbered = [u.first_line if u.number_lines else None for u in used]
        digest = hashing.result()
    result = FileResult(str(path), connector.name, kind, digest, warnings=warnings)
    if not reingest and store.scalar(SEEN_SQL, [digest, connector.name, kind]):
        return _skipped(store, path, connector.name, kind, digest, options)  # another name
    with store.transaction():
        prior = prior_ingests(con, connector.name, kind, str(path), digest) if reingest else []
        before = row_counts(con, prior) if prior else None
        remove(con, prior)
        ingest_id = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log").fetchone()[0]
        con.execute("INSERT INTO ingest_log (ingest_id, source, kind, file, sha256, size_bytes, "
                    "started, offset_bytes, first_line, options) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [ingest_id, connector.name, kind, str(path), digest, size, now_utc(),
                     tail.offset, tail.lines + 1, options_json(options)])
        for i, batch in enumerate(staged):
            counts = _load(con, batch.table, f"stage_{i}", connector.name, ingest_id, str(path),
                           numbered[i], tail.lines)
            result.read += counts["read"]
            result.accepted += counts["accepted"]
            result.quarantined += counts["quarantined"]
            result.duplicates += counts["duplicates"]
            result.ignored += counts["ignored"]
        for reason, count in con.execute(
                "SELECT reason, count(*) FROM quarantine WHERE ingest_id = ? GROUP BY 1 "
                "ORDER BY 2 DESC, 1", [ingest_id]).fetchall():
            result.reasons[reason] = count
        con.execute("UPDATE ingest_log SET read = ?, accepted = ?, quarantined = ?, duplicates = ?, "
                    "ignored = ?, finished = ?, warnings = ? WHERE ingest_id = ?",
                    [result.read, result.accepted, result.quarantined, result.duplicates,
                     result.ignored, now_utc(), "\n".join(warnings) or None, ingest_id])
        if before is not None:
            result.replaced = describe(before, row_counts(con, [ingest_id]))
    return result


def _ingest_direct(store: Store, source: str, kind: str, path: Path, size: int, batch: Staged,
                   hashing, tail: Tail = Tail(), options: Options = Options()) -> FileResult | None:
    """A JSON-lines activity file parsed and stored in one pass (correlate/ingest_activity.py).

    None when that cannot be used (a row to quarantine, an event_id repeated in the file, a
    failed read): nothing is kept and the caller takes the staged path.
    """
    con = store.con
    con.execute("BEGIN TRANSACTION")
    try:
        ingest_id = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log").fetchone()[0]
        read, accepted = load_direct(con, batch.sql, bound(batch), source, ingest_id)
        digest = hashing.result()
        result = FileResult(str(path), source, kind, digest, read=read, accepted=accepted,
                            duplicates=read - accepted)
        if store.scalar(SEEN_SQL, [digest, source, kind]):
            con.execute("ROLLBACK")
            return _skipped(store, path, source, kind, digest, options)
        now = now_utc()
        con.execute("INSERT INTO ingest_log (ingest_id, source, kind, file, sha256, size_bytes, "
                    "read, accepted, quarantined, duplicates, ignored, started, finished, "
                    "offset_bytes, first_line, options) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 0, ?, ?, ?, ?, ?)",
                    [ingest_id, source, kind, str(path), digest, size, read, accepted,
                     read - accepted, now, now, tail.offset, tail.lines + 1,
                     options_json(options)])
    except NotDirect:
        con.execute("ROLLBACK")
        return None
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return result


def bound(batch: Staged) -> dict:
    """The batch's parameters its SQL uses."""
    return {k: v for k, v in batch.params.items() if f"${k}" in batch.sql}


def _read_as(batch: Staged, path: str, literal: str) -> Staged:
    """The batch reading `literal` where it read `path` (see ingest_files.literal_path)."""
    if path == literal:
        return batch
    exact = batch.exact and _read_as(batch.exact, path, literal)
    params = {k: literal if k == "path" and v == path else v for k, v in batch.params.items()}
    return replace(batch, params=params, exact=exact)


def _stage(con, batch: Staged, name: str) -> None:
    if batch.frame is not None:
        # a callable frame is parsed only when this (exact) batch is needed. register() refuses
        # to run while a result is half-read (fetchone), so callers fetch results whole.
        con.register("src", batch.frame() if callable(batch.frame) else batch.frame)
    try:
        con.execute("SET preserve_insertion_order = true")  # row_number() = file order
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {batch.sql}", bound(batch))
    finally:
        con.execute("SET preserve_insertion_order = false")
        if batch.frame is not None:
            con.unregister("src")


def _stage_batch(con, batch: Staged, name: str, path: str) -> Staged:
    """Fast path first; the exact path when it fails or when rows need exact line numbers.

    Returns the batch that was staged (the fast one or its exact fallback).
    """
    used = batch
    try:
        _stage(con, batch, name)
        if batch.exact is not None and con.execute(
                f"SELECT count(*) FROM {name} WHERE reason IS NOT NULL").fetchall()[0][0]:
            used = batch.exact
            _stage(con, used, name)
    except duckdb.Error as exc:
        used = batch
        while True:     # down the fallbacks: exact, then its own (bytes that are not UTF-8)
            if used.exact is None:
                raise InputError(f"cannot read: {str(exc).splitlines()[0]}", path) from None
            used = used.exact
            try:
                _stage(con, used, name)
                break
            except duckdb.Error as again:
                exc = again
    return used


def _load(con, table: str, name: str, source: str, ingest_id: int, path: str,
          numbered: int | None = None, shift: int = 0) -> dict:
    # rid: the row's position in the staged table, which keeps the file's order
    # (preserve_insertion_order); with `numbered` it is also the line (Staged.number_lines).
    # `shift`: lines of the file before the part read (a grown file's tail).
    line = (f"* REPLACE (rowid + {int(numbered) + int(shift)} AS line)" if numbered is not None
            else f"* REPLACE (line + {int(shift)} AS line)" if shift else "*")
    con.execute(f"CREATE OR REPLACE TEMP VIEW stage AS SELECT {line}, rowid AS rid FROM {name}")
    for (kind,) in con.execute("SELECT CASE WHEN table_type = 'VIEW' THEN 'VIEW' ELSE 'TABLE' END "
                               "FROM information_schema.tables WHERE table_name = 'fresh' "
                               "AND table_schema = 'main' AND table_catalog = 'temp'").fetchall():
        con.execute(f"DROP {kind} fresh")
    read = con.execute("SELECT count(*) FROM stage").fetchone()[0]
    quarantined = con.execute(
        f"INSERT INTO quarantine SELECT ?, ?, ?, ?, line, reason, left({redact_sql('raw')}, 4000) "
        "FROM stage WHERE reason IS NOT NULL", [ingest_id, source, table, path]).fetchone()[0]
    if table == "ignored":
        con.execute("INSERT INTO ignored_counts SELECT ?, coalesce(event_type, '?'), count(*) "
                    "FROM stage WHERE reason IS NULL GROUP BY ALL", [ingest_id])
        return {"read": read, "quarantined": quarantined, "accepted": 0, "duplicates": 0,
                "ignored": read - quarantined}
    accepted = LOADERS[table](con, source, ingest_id)
    return {"read": read, "quarantined": quarantined, "accepted": accepted,
            "duplicates": read - quarantined - accepted, "ignored": 0}


def _count(con, sql: str, params: list) -> int:
    return con.execute(sql, params).fetchone()[0]


APPROVAL_COLS = ("approval_id", "account", "target", "start_ts", "end_ts", "ticket", "requester",
                 "approver", "kind", "status", "revoked_at")
TICKET_COLS = ("ticket_id", "status", "opened", "closed", "planned_start", "planned_end",
               "assignee")


def _upsert(con, table: str, key: str, pairs: list[tuple[str, str]], source: str,
            ingest_id: int, source_in_key: bool) -> int:
    """Latest line per key wins; rows identical to what is stored count as duplicates.

    `pairs`: (table column, expression over the staged row); `key`: a staged expression.
    """
    cols = tuple(col for col, _ in pairs)
    same = " AND ".join(f"t.{c} IS NOT DISTINCT FROM f.{c}" for c in cols)
    src_match = "t.source = ? AND " if source_in_key else ""
    select = ", ".join(f"{expr} AS {col}" for col, expr in pairs)
    con.execute(f"CREATE OR REPLACE TEMP TABLE fresh AS SELECT line, {select} FROM stage "
                f"WHERE reason IS NULL "
                f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY line DESC) = 1")
    con.execute(f"DELETE FROM fresh f WHERE EXISTS (SELECT 1 FROM {table} t WHERE {src_match}{same})",
                [source] if source_in_key else [])
    names = ", ".join(cols)
    con.execute(f"INSERT OR REPLACE INTO {table} ({names}, source, ingest_id, line) "
                f"SELECT {names}, ?, ?, line FROM fresh", [source, ingest_id])
    return _count(con, "SELECT count(*) FROM fresh", [])


def _with_optional(con, table: str, cols: tuple[str, ...]) -> list[tuple[str, str]]:
    """The table's columns plus the optional ones this staged batch carries."""
    present = {r[0] for r in con.execute("DESCRIBE stage").fetchall()}
    return [(c, c) for c in cols] + [(col, staged)
                                     for staged, col in OPTIONAL_COLUMNS.get(table, {}).items()
                                     if staged in present]


def _load_approvals(con, source, ingest_id):
    return _upsert(con, "approvals", "approval_id",
                   _with_optional(con, "approvals", APPROVAL_COLS), source, ingest_id, True)


def _load_tickets(con, source, ingest_id):
    return _upsert(con, "tickets", "ticket_id", _with_optional(con, "tickets", TICKET_COLS),
                   source, ingest_id, False)


def _load_history(con, source, ingest_id):
    before = _count(con, "SELECT count(*) FROM ticket_history", [])
    con.execute("INSERT OR IGNORE INTO ticket_history (ticket_id, ts, status, source, ingest_id, line) "
                "SELECT ticket_id, ts, status, ?, ?, line FROM stage WHERE reason IS NULL",
                [source, ingest_id])
    return _count(con, "SELECT count(*) FROM ticket_history", []) - before


def _load_activity(con, source, ingest_id):
    return load_staged(con, source, ingest_id)


def _load_identities(con, source, ingest_id):
    pairs = [("alias_norm", "lower(alias)"), ("identity", "identity"), ("kind", "kind"),
             ("owner", "owner")]
    return _upsert(con, "identities", "lower(alias)", pairs, source, ingest_id, False)


def _load_targets(con, source, ingest_id):
    con.execute("CREATE OR REPLACE TEMP TABLE fresh AS SELECT DISTINCT ON (n, a, g) lower(name) AS n, "
                "lower(alias) AS a, grp AS g, line FROM stage s WHERE reason IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM targets t WHERE t.name_norm = lower(s.name) AND "
                "t.alias_norm IS NOT DISTINCT FROM lower(s.alias) AND t.grp IS NOT DISTINCT FROM s.grp) "
                "ORDER BY n, a, g, line")
    con.execute("INSERT INTO targets SELECT n, a, g, ?, ?, line FROM fresh", [source, ingest_id])
    return _count(con, "SELECT count(*) FROM fresh", [])


LOADERS = {"identities": _load_identities, "targets": _load_targets,
           "approvals": _load_approvals, "tickets": _load_tickets,
           "ticket_history": _load_history, "activity": _load_activity,
           "approval_events": load_approval_events, "approvers": load_approvers}
