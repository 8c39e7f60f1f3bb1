"""The watch loop: read what is new, store it through ingest, judge it, alert, repeat.

One cycle (docs/watch.md): every follower hands out its new complete lines (a chunk); each
chunk is spooled, ingested, and committed with its verdicts, detections and alerts; if
approvals or tickets changed, the open FAIL verdicts are judged again; folded alerts whose window closed are
summarised; pending alerts are offered to every sink and what the sinks acknowledge is
recorded. The loop sleeps until watchfiles reports a change, a receiver writes, or `poll_s`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import duckdb

from connectors.base import Options
from connectors.registry import get_connector
from correlate.clock import now_utc
from correlate.detect.run import DetectionSettings
from correlate.engine import Policy
from correlate.errors import InputError, PamcorrError, StoreError, printable
from correlate.ingest import ingest
from correlate.store import Store
from correlate.watch import alerts as A
from correlate.watch.judge import changes_verdicts, judge, load_rules, new_actions, open_actions
from correlate.watch.seen import SeenIds
from correlate.watch.sequences import SequenceHistory
from correlate.watch.sinks import Sink
from correlate.watch.sources import (REFUSED_SUFFIXES, Chunk, FileFollower, Journal,
                                     SyslogReceiver, read_stdin)
from correlate.watch.state import Spool, file_chunk, line_tables, position

JOURNAL_LIMIT = 64 << 20     # a journal fully read and this big starts again empty

# Ingests an earlier version of watch left without their detections (it ran them apart)
TODO_SQL = "SELECT ingest_id FROM watch_detect_todo"
TODO_DONE_SQL = "DELETE FROM watch_detect_todo"
FILE_IDS_SQL = ("SELECT ingest_id FROM ingest_log WHERE file = ? AND sha256 IN "
                "(SELECT unnest(?::VARCHAR[]))")
WHOLE_FILE_SQL = "INSERT OR REPLACE INTO watch_offsets VALUES (?, ?, ?, ?, ?, ?, 0, ?)"
PENDING_COUNT_SQL = "SELECT count(*) FROM watch_alerts WHERE pending"


def _limit_sql(cache_limit: str | None) -> list[str]:
    """[hold to the cache limit, lift it]. DuckDB keeps every block of the store it has read
    (ingest's de-duplication reads the stored event ids, more each batch) until its memory
    limit, 80 % of RAM by default: RSS grew with the store. A batch is stored and judged held to
    `cache_limit` (blocks beyond it evicted: they are on disk); one that needs more is done
    again with the limit lifted; everything else runs lifted."""
    if not cache_limit:
        return []
    from correlate.store import _size
    limit = os.environ.get("PAMCORR_MEMORY_LIMIT")
    return [f"SET memory_limit = '{_size(cache_limit)}'",
            f"SET memory_limit = '{_size(limit)}'" if limit else "RESET memory_limit"]


class OutOfMemory(StoreError):
    """DuckDB ran out of memory storing a batch (never a reason to skip it)."""


@dataclass(frozen=True)
class Follow:
    """One followed thing: `path` a file, a folder or a glob (whole new files), or `-`."""

    source: str
    path: str
    kind: str | None = None
    options: Options = field(default_factory=Options)


def split_glob(path: str) -> tuple[Path, str]:
    """(the folder before the first glob character, the pattern below it)."""
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return Path(*parts[:i]) if i else Path("."), str(Path(*parts[i:]))
    return Path(path), "**/*"


@dataclass
class WatchSettings:
    spool: Path
    sinks: list = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)
    alerts: A.AlertPolicy = field(default_factory=A.AlertPolicy)
    detections: DetectionSettings = field(default_factory=DetectionSettings)
    rejudge_s: int = 24 * 3600
    poll_s: float = 1.0
    debounce_ms: int = 50
    listen: tuple[str, int] | None = None
    listen_source: str = "syslog"
    listen_options: Options = field(default_factory=Options)
    once: bool = False           # read what is there, alert, deliver, stop
    threads: int = 1             # DuckDB threads: small batches run faster on one
    cache_limit: str | None = None    # DuckDB's cache of the store trimmed to this each batch


class Watcher:
    """The followers, spool, sinks and state of one `pamcorr watch`; `run()` loops, `step()`
    is one cycle (the in-process tests drive it directly)."""

    def __init__(self, store: Store, follows: list[Follow], settings: WatchSettings,
                 say=None):
        self.store, self.con, self.s = store, store.con, settings
        self.say = say or (lambda m: print(printable(m), file=sys.stderr, flush=True))
        self.spool = Spool(settings.spool)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.tables = line_tables(self.con)
        self.followers: list[tuple[FileFollower, object, str, Options]] = []
        self.planned: list[tuple] = []
        self.folders: list[tuple[Path, str, object, str, Options, dict]] = []
        self.journals: list[Journal] = []
        self.stdin_done: threading.Event | None = None
        self.receiver = None
        self.rejudge_due = False
        self.summarized = 0.0
        # batches are small: one DuckDB thread wastes less time handing work between threads
        # (a loaded machine made that most of a batch's time; docs/performance.md)
        self.con.execute(f"SET threads = {int(settings.threads)}")
        self.limits = _limit_sql(settings.cache_limit)
        load_rules(self.con, settings.detections)      # parsed now, not on the first alert
        self.history = None
        if settings.detections.enabled:
            from correlate.detect.run import cached_rules
            self.history = SequenceHistory(cached_rules(tuple(settings.detections.rule_dirs)))
            self._detect_leftovers()
        self.stats = {"chunks": 0, "files": 0, "read": 0, "accepted": 0, "alerts": 0,
                      "resolved": 0}
        for f in follows:
            self._add(f)
        if settings.listen:
            connector, kind = self._connector(settings.listen_source, None)
            journal = self._journal(settings.listen_source, f"syslog-{settings.listen[1]}")
            self.receiver = SyslogReceiver(journal, *settings.listen)
            self._follow(settings.listen_source, kind, connector, str(journal.path),
                         settings.listen_options)
        # the store's action keys, so a batch's de-duplication reads only what may match
        # (correlate/watch/seen.py); read held to the cache limit, as a batch is
        self.seen = self._held(SeenIds.of_store, self.con)
        store.known_ids = self.seen       # ingest (onepass.py, staged.py) looks for it
        # what an earlier process spooled and did not finish comes first, then each file
        # resumes where the store says it was left
        self.leftovers = self._leftovers()
        for source, kind, connector, path, options in self.planned:
            pos = position(self.con, source, kind, path)
            self.followers.append((FileFollower(source, kind, path, pos), connector, kind,
                                   options))

    # ------------------------------------------------------------------ set-up
    def _connector(self, source: str, kind: str | None):
        connector = get_connector(source)
        if kind is None:
            if len(connector.kinds) != 1 and "auto" not in connector.kinds:
                raise PamcorrError(f"source {source} needs a kind, one of "
                                   f"{', '.join(connector.kinds)} (SOURCE:KIND)")
            kind = "auto" if "auto" in connector.kinds else connector.kinds[0]
        return connector, kind

    def _journal(self, source: str, name: str) -> Journal:
        suffix = ".jsonl" if source == "generic" else ".log"
        journal = Journal(self.s.spool / "journal" / source / f"{name}{suffix}")
        journal.wake = self.wake.set
        self.journals.append(journal)
        return journal

    def _follow(self, source, kind, connector, path, options) -> None:
        self.planned.append((source, kind, connector, path, options))

    def _add(self, f: Follow) -> None:
        connector, kind = self._connector(f.source, f.kind)
        if f.path == "-":
            journal = self._journal(f.source, "stdin")
            self.stdin_done = threading.Event()
            threading.Thread(target=read_stdin, args=(journal, self.stdin_done),
                             daemon=True).start()
            self._follow(f.source, kind, connector, str(journal.path), f.options)
            return
        # the name as given, as `pamcorr ingest` and the weekly run record it: a file named the
        # same way there is then read from where watch stopped
        path = Path(f.path)
        if path.is_dir() or not path.exists() and any(c in f.path for c in "*?["):
            folder, pattern = split_glob(f.path)
            self.folders.append((folder, pattern, connector, kind, f.options, {}))
            return
        if path.name.lower().endswith(REFUSED_SUFFIXES):
            raise PamcorrError(f"{printable(path)}: a .gz or CSV file cannot be followed line by "
                               f"line; watch its folder instead (new files are read whole)")
        self._follow(f.source, kind, connector, str(path), f.options)

    # ------------------------------------------------------------------ one cycle
    def step(self) -> int:
        """One cycle; returns how many chunks or files were stored."""
        done, self.leftovers = self.leftovers, 0
        for follower, connector, kind, options in self.followers:
            for chunk in follower.poll():
                self._chunk(chunk, connector, options)
                done += 1
        for folder in self.folders:
            done += self._folder(*folder)
        self._journals_trim()
        if self.rejudge_due:
            self.rejudge_due = False
            self._rejudge()
        if time.monotonic() - self.summarized >= 1:      # folded alerts: once a second
            self.summarized = time.monotonic()
            with self.store.transaction():
                A.store_summaries(self.con, self.s.alerts, now_utc())
        self.deliver()
        return done

    def _held(self, work, *args) -> None:
        """work(*args) with DuckDB held to the cache limit; when it ran out of memory (its
        transaction rolled back) it is done again with the limit lifted: a big file read whole,
        an 8 MiB chunk. The limit is lifted afterwards either way."""
        if not self.limits:
            return work(*args)
        try:
            self.con.execute(self.limits[0])
        except duckdb.Error:     # more than that in use now: this batch runs lifted
            return work(*args)
        try:
            return work(*args)
        except (duckdb.OutOfMemoryException, StoreError) as exc:
            if not (isinstance(exc, (duckdb.OutOfMemoryException, OutOfMemory))
                    or isinstance(exc.__cause__, duckdb.OutOfMemoryException)):
                raise
            self.con.execute(self.limits[1])
            return work(*args)
        finally:
            self.con.execute(self.limits[1])

    def _leftovers(self) -> int:
        n = 0
        for spooled, chunk in self.spool.leftovers():
            pos = position(self.con, chunk.source, chunk.kind, chunk.path)
            if pos and pos.offset >= chunk.end and (pos.dev, pos.inode) == (chunk.dev, chunk.inode):
                Spool.remove(spooled)
                continue
            connector, _ = self._connector(chunk.source, chunk.kind)
            options = next((p[4] for p in self.planned if p[3] == chunk.path), Options())
            self._chunk(chunk, connector, options, spooled)
            n += 1
        return n

    def _ingest(self, connector, kind, path: Path, options: Options) -> list:
        try:
            return ingest(self.store, connector, kind, [str(path)], options,
                          warn=lambda m: self.say(f"watch: {m}"))
        except StoreError as exc:
            if isinstance(exc.__cause__, duckdb.OutOfMemoryException):
                # out of memory (ingest/read.py): skipping would lose the chunk; stop, it
                # stays spooled and is stored on the next start
                raise OutOfMemory(f"watch: {exc}") from exc
            raise
        except InputError as exc:
            self.say(f"watch: {exc}")
            return []
        finally:        # whatever ingest committed, by any of its paths, is known from now on
            self.seen.add_since(self.con)

    def _chunk(self, chunk: Chunk, connector, options: Options, spooled: Path | None = None):
        spooled = spooled or self.spool.write(chunk)
        self._held(self._store_chunk, chunk, connector, options, spooled)
        Spool.remove(spooled)
        self.stats["chunks"] += 1
        self.rejudge_due |= changes_verdicts(chunk.source, chunk.kind)

    def _store_chunk(self, chunk: Chunk, connector, options: Options, spooled: Path) -> None:
        """Ingest the spooled chunk, then file, judge and alert it in one transaction (done
        again from the start after running out of memory: ingest skips what it committed)."""
        for r in self._ingest(connector, chunk.kind, spooled, options):
            self.stats["read"] += r.read
            self.stats["accepted"] += r.accepted
        now = now_utc()
        with self.store.transaction():
            ids = file_chunk(self.con, chunk, spooled, self.tables)
            if ids:
                self._judge_new(ids, now)

    def _judge_new(self, ids: list[int], now) -> None:
        """Inside the batch's transaction: the verdicts and detections of its new actions
        (sequence rules with earlier batches' matches) and their alerts, pending."""
        new_actions(self.con, ids)
        judge(self.con, self.s.policy, now, self.s.detections, self.history)
        A.store_new(self.con, self.s.alerts, now)

    def _detect_leftovers(self) -> None:
        """Detections an earlier version deferred and did not run before it stopped."""
        ids = [i for (i,) in self.con.execute(TODO_SQL).fetchall()]
        if ids:
            now = now_utc()
            with self.store.transaction():
                new_actions(self.con, ids)
                judge(self.con, self.s.policy, now, self.s.detections, self.history)
                A.store_new(self.con, self.s.alerts, now, verdicts=False)
                self.con.execute(TODO_DONE_SQL)

    def _folder(self, folder: Path, pattern: str, connector, kind, options, sizes: dict) -> int:
        """New files in a watched folder (matching the glob), read whole once their size held
        for one cycle (at once with --once). Hidden files are not read, as in ingest."""
        n = 0
        for path in sorted(p for p in folder.glob(pattern) if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(folder).parts)):
            size = path.stat().st_size
            key = str(path)
            if sizes.get(key) == ("done", size):
                continue
            pos = position(self.con, connector.name, kind, key)
            stored = pos is not None and pos.offset == size
            if not stored and not self.s.once and sizes.get(key) != size:
                sizes[key] = size            # still being written, or first seen
                self.wake.set()
                continue
            if not stored:
                self._held(self._store_file, connector, kind, path, options, size)
                n += 1
            sizes[key] = ("done", size)
        return n

    def _store_file(self, connector, kind, path: Path, options: Options, size: int) -> None:
        results = self._ingest(connector, kind, path, options)
        self.stats["files"] += 1
        for r in results:
            self.stats["read"] += r.read
            self.stats["accepted"] += r.accepted
        now = now_utc()
        with self.store.transaction():
            shas = [r.sha256 for r in results]
            ids = [i for (i,) in self.con.execute(FILE_IDS_SQL, [str(path), shas]).fetchall()]
            if ids:
                self._judge_new(ids, now)
            self.rejudge_due |= changes_verdicts(connector.name, kind)
            st = path.stat()
            self.con.execute(WHOLE_FILE_SQL,
                             [connector.name, kind, str(path), st.st_dev, st.st_ino, size, now])

    def _rejudge(self) -> None:
        now = now_utc()
        with self.store.transaction():
            if open_actions(self.con, now - timedelta(seconds=self.s.rejudge_s)):
                judge(self.con, self.s.policy, now, None)
                self.stats["resolved"] += A.store_rejudged(self.con, now)

    def _journals_trim(self) -> None:
        for follower, *_ in self.followers:
            for journal in self.journals:
                if str(journal.path) == follower.path and follower.offset > JOURNAL_LIMIT:
                    with journal.lock:
                        if journal.fh.tell() == follower.offset:
                            journal.fh.truncate(0)
                            journal.fh.seek(0)

    # ------------------------------------------------------------------ delivery
    def deliver(self) -> None:
        sinks: list[Sink] = self.s.sinks
        if not sinks:
            return
        self.record_acks()
        rows = self.con.execute(A.pending_sql(5000)).fetchall()
        for sink in sinks:
            todo = [json.loads(body) for (_, _, body, delivered, dead) in rows
                    if sink.name not in delivered and sink.name not in dead]
            sink.offer(todo)
        self.record_acks()

    def record_acks(self) -> None:
        names = [s.name for s in self.s.sinks]
        acks = [(sink.name, *a) for sink in self.s.sinks for a in sink.acks()]
        if not acks:
            return
        with self.store.transaction():
            self.con.execute(A.ACKS_SQL, [[a[1] for a in acks], [a[2] for a in acks],
                                          [a[0] for a in acks], [a[3] for a in acks]])
            self.con.execute(A.DONE_SQL, [names])
        self.stats["alerts"] += sum(1 for a in acks if a[3] == "delivered")

    def pending(self) -> int:
        return self.con.execute(PENDING_COUNT_SQL).fetchall()[0][0]

    # ------------------------------------------------------------------ run
    def _watch_files(self) -> None:
        try:
            from watchfiles import watch
        except ImportError:      # polling every poll_s still works
            return
        dirs = {str(Path(f.path).parent) for f, *_ in self.followers}
        dirs |= {str(p) for p, *_ in self.folders}     # (recursive: new sub-folders too)
        dirs = [d for d in dirs if Path(d).is_dir()]
        if not dirs:
            return
        for _ in watch(*dirs, debounce=self.s.debounce_ms, step=max(self.s.debounce_ms // 2, 10),
                       stop_event=self.stop, raise_interrupt=False):
            self.wake.set()

    def run(self) -> None:
        if self.receiver:
            self.receiver.start()
            self.say(f"watch: syslog on {self.receiver.address[0]}:{self.receiver.address[1]} "
                     f"(UDP and TCP)")
        threading.Thread(target=self._watch_files, daemon=True).start()
        try:
            while not self.stop.is_set():
                self.wake.clear()
                worked = self.step()
                if self.s.once or (self.stdin_done is not None and self.stdin_done.is_set()
                                   and not worked and len(self.followers) == 1
                                   and not self.receiver and not self.folders):
                    self._drain()
                    break
                if not worked and not any(s.busy() for s in self.s.sinks):
                    self.wake.wait(self.s.poll_s)
                elif not worked:
                    time.sleep(0.05)
                    self.record_acks()
            self.record_acks()
        finally:
            self.close()

    def _drain(self, timeout_s: float = 30) -> None:
        """Before stopping: wait for the sinks to acknowledge what they hold."""
        end = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < end:
            self.deliver()
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        if self.receiver:
            self.receiver.close()
        for sink in self.s.sinks:
            sink.close()
        for follower, *_ in self.followers:
            follower.close()
        for journal in self.journals:
            journal.close()
