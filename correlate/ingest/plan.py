"""Plan: what reading one file takes. Its sha256 (hashed alongside the read), whether it was
ingested before (skip it), whether it only grew since (read the new tail), and the
connector's staged batches reading it under a name DuckDB takes literally."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from connectors.base import Options, Staged
from correlate.clock import now_utc
from correlate.ingest import log
from correlate.ingest.base import FileResult, Tail
from correlate.ingest.files import head_of, is_gzip, literal_path, sha256_file, tail_copy
from correlate.ingest.read import read_as


@dataclass
class Plan:
    """One file to read: the batches and everything the later stages need to know."""

    path: Path
    source: str
    kind: str
    options: Options
    size: int
    hashing: Future             # the file's sha256
    staged: list[Staged]        # the connector's batches, reading `read_from`
    read_from: Path             # the file, or a copy of its new tail
    tail: Tail = Tail()
    reingest: bool = False
    started: datetime = field(default_factory=now_utc)
    warnings: list = field(default_factory=list)

    @property
    def digest(self) -> str:
        return self.hashing.result()

    def result(self, **counts) -> FileResult:
        return FileResult(str(self.path), self.source, self.kind, self.digest,
                          warnings=list(self.warnings), **counts)

    def entry(self, ingest_id: int, result: FileResult) -> log.Entry:
        """This file's ingest_log row."""
        return log.Entry(ingest_id, result, self.size, self.started, now_utc(),
                         log.options_json(self.options), self.tail)

    def skipped(self, con) -> FileResult:
        return log.skipped(con, self.path, self.source, self.kind, self.digest, self.options)


def _one_record_a_line(batch: Staged) -> bool:
    """The batch reads one record per line, no header, no Python reader: a tail of the file
    is read as the same lines would be in the whole file."""
    return batch.tail_safe or (batch.skips_blank_lines and batch.first_line == 1
                               and batch.frame is None
                               and (batch.exact is None or batch.exact.frame is None))


def _grown(con, source: str, kind: str, path: Path, size: int, staged: list[Staged]) -> Tail:
    """Tail(offset, lines) when `path` only grew since it was last ingested (the content
    logged then, ending at a line end, is its prefix): the old part is not read again."""
    if is_gzip(path) or not all(_one_record_a_line(b) for b in staged):
        return Tail()
    row = log.last_smaller(con, source, kind, str(path), size)
    if not row:
        return Tail()
    sha, old_size = row
    head, lines, at_line_end = head_of(path, old_size)
    return Tail(old_size, lines) if head == sha and at_line_end else Tail()


def plan_file(con, connector, kind: str, path: Path, options: Options, reingest: bool,
              pool: ThreadPoolExecutor, scratch: ExitStack) -> Plan | FileResult:
    """The file's Plan, or its result when it is skipped (the same content ingested before).

    Temp files it needs (a tail copy, a link with a plain name) live as long as `scratch`.
    """
    size = path.stat().st_size
    started = now_utc()
    # hashlib and DuckDB both release the GIL: hash while DuckDB parses, unless the same
    # file (name and size) was ingested before, when the hash decides first.
    hashing = pool.submit(sha256_file, path)
    if is_gzip(path):
        hashing.result()    # CRC-32 and expansion limit checked before anything reads it
    source = connector.name
    if not reingest and log.likely_seen(con, size, str(path), source, kind):
        if log.seen(con, hashing.result(), source, kind):
            return log.skipped(con, path, source, kind, hashing.result(), options)
    staged = connector.stage(path, kind, options)
    warnings = [w for b in staged for w in getattr(b, "warnings", ())]
    # --reingest reads the whole file: its earlier tails are replaced with the rest
    tail = Tail() if reingest else _grown(con, source, kind, path, size, staged)
    read_from = path
    if tail.offset:
        read_from = scratch.enter_context(tail_copy(path, tail.offset))
        staged = connector.stage(read_from, kind, options)
    literal = scratch.enter_context(literal_path(read_from))
    staged = [read_as(batch, str(read_from), literal) for batch in staged]
    return Plan(path, source, kind, options, size, hashing, staged, read_from, tail, reingest,
                started, warnings)
