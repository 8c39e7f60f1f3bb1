"""Many Records files at once: arrays cut out in Python, read by one statement, logged per file.

For a connector with `records_array` and `stage_arrays` (CloudTrail's S3 files, issue #3).
Parsing each `{"Records": [...]}` document as one JSON value costs ~35 us a record, and the
per-file path ~45 ms a file. Here worker threads hash each file, decompress it and cut its
Records array out into a temp file (zlib and hashlib release the GIL); `read_json` reads
many such arrays per statement, and a fixed number of statements per chunk of files loads
them (correlate/ingest/many_direct.py, else correlate/ingest/many_load.py).

The result equals ingesting the files one by one (tests/test_cloudtrail_many.py):
* files are taken in the order given; each gets its own ingest_log row and ingest_id;
* a file whose sha256 is logged already, or came earlier in this run, is skipped;
* a file not exactly of that shape, that the read rejects, or with a record to quarantine
  takes `ingest_file` at its place in the order, so quarantine keeps file, line and raw
  text, and later files see its rows as stored;
* line = the record's ordinal in its file; act_id, duplicates (the first (file, line) of an
  event_id wins, unless stored before) and ignored counts are those of one by one.
"""

from __future__ import annotations

import gzip
import hashlib
import mmap
import os
import shutil
import tempfile
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from connectors.base import Options
from connectors.jsonsql import MAX_DOCUMENT, records_head
from correlate.ingest import log
from correlate.ingest.files import inflate_limit
from correlate.ingest.many_direct import DirectLoad
from correlate.ingest.many_load import ArraysLoad, in_file_order
from correlate.store import Store

CHUNK_BYTES = 512 << 20    # JSON text loaded by one transaction (1 GiB: no faster)
BATCH_BYTES = CHUNK_BYTES  # of it, read by one statement of the one-pass load (smaller
                           # statements overlap the threads more, but measured slower)
PIECE = 1 << 20            # decompressed bytes per write
AHEAD = 16                 # files prepared ahead of the one being consumed
SHM = "/dev/shm"


@dataclass
class Prepared:
    """One file made ready by a worker thread."""

    index: int                    # its place in the files given
    path: Path
    sha256: str
    size: int
    array: Path | None = None     # its Records array, cut out into <index>.json
    nbytes: int = 0
    known: bool = False           # sha256 logged before this run began
    plain_sha256: str | None = None   # of the uncompressed bytes (issue 20: digests list it)


def inflate_to(raw: bytes, fh, limit: int = MAX_DOCUMENT, plain=None) -> bool:
    """Write the gzip members of `raw` decompressed to `fh`, a piece at a time (small pieces
    stay in the CPU cache); False when corrupt (zlib checks each member's CRC-32 and length)
    or over `limit` bytes: the per-file path then says why. `plain` (a hashlib object), when
    given, gets one update per piece: the SHA-256 a CloudTrail digest lists, in this pass."""
    view, total = memoryview(raw), 0
    try:
        while view:
            d = zlib.decompressobj(wbits=31)
            while not d.eof:
                piece = d.decompress(view, PIECE)
                total += len(piece)
                if total > limit or not piece and len(d.unconsumed_tail) == len(view):
                    return False            # too big, or cut short
                fh.write(piece)
                if plain is not None:
                    plain.update(piece)
                view = d.unconsumed_tail
            view = memoryview(d.unused_data)
    except zlib.error:
        return False
    return True


def looks_like_records(path: Path) -> bool:
    """Cheap first look: the file opens `{"Records": [`, and is not too big to read whole."""
    try:
        if path.stat().st_size > MAX_DOCUMENT:
            return False
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            return records_head(fh.read(256))
    except (OSError, EOFError, zlib.error):
        return False


def prepare(connector, index: int, path: Path, folder: Path, known: frozenset) -> Prepared:
    """Hash the file; unless known, leave its Records array in `folder` (None: not that shape).

    The document is written out whole, then looked at in place (mmap): its opening
    `{"Records":` becomes spaces and it is cut after the array's `]`.
    """
    raw = path.read_bytes()
    prep = Prepared(index, path, hashlib.sha256(raw).hexdigest(), len(raw))
    if prep.sha256 in known:
        prep.known = True
        return prep
    out = folder / f"{index}.json"
    with open(out, "w+b") as fh:
        if path.name.endswith(".gz"):
            plain = hashlib.sha256()
            written = inflate_to(raw, fh, min(MAX_DOCUMENT, inflate_limit(len(raw))), plain)
            prep.plain_sha256 = plain.hexdigest() if written else None
        else:
            written = bool(fh.write(raw))
            prep.plain_sha256 = prep.sha256
        span = None
        if written and fh.tell():
            fh.flush()
            with mmap.mmap(fh.fileno(), 0) as doc:
                span = connector.records_array(doc)
                if span is not None:
                    doc[:span[0]] = b" " * span[0]
        if span is not None:
            fh.truncate(span[1])
    if span is None:
        out.unlink()
        return prep
    prep.array, prep.nbytes = out, span[1]
    return prep


def scratch_dir() -> str | None:
    """Where the cut-out arrays go: a RAM disk (/dev/shm) with room for two chunks, else the
    usual temp folder. Written there and read back once, they cost less CPU than on disk."""
    try:
        if shutil.disk_usage(SHM).free >= 2 * CHUNK_BYTES + (256 << 20) and os.access(SHM, os.W_OK):
            return SHM
    except OSError:
        pass
    return None


def ingest_many(store: Store, connector, kind: str, files: list[Path], options: Options,
                one_by_one, progress=None) -> list:
    """FileResults of ingesting `files` in order; `one_by_one(path)` is the per-file pipeline
    (correlate/ingest/pipeline.py), for the files this strategy does not take."""
    known = log.known(store.con, connector.name, kind)
    load = ArraysLoad(store, connector.name, kind, connector.stage_arrays(options),
                      log.options_json(options))

    def skipped(p: Prepared):
        return log.skipped(store.con, p.path, connector.name, kind, p.sha256, options)

    run = _Run(load, one_by_one, skipped)
    results = []
    with tempfile.TemporaryDirectory(prefix="pamcorr-arrays-", dir=scratch_dir()) as tmp, \
            ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque = deque()
        todo = iter(enumerate(files))

        def submit():
            for i, path in todo:
                pending.append((path, pool.submit(prepare, connector, i, path, Path(tmp), known)
                                if looks_like_records(path) else None))
                return

        for _ in range(AHEAD):
            submit()
        try:
            for n in range(1, len(files) + 1):
                path, future = pending.popleft()
                submit()
                if progress:
                    progress(f"[{n}/{len(files)}] {path}")
                try:
                    prep = future.result() if future is not None else None
                except OSError:         # unreadable: the per-file path reports it
                    prep = None
                if prep is None or (prep.array is None and not prep.known):
                    results += run.flush()
                    results.append(run.one_by_one(path))
                else:
                    results += run.add(prep)
            results += run.flush()
        finally:
            run.close()
    return results


class _Run:
    """Files of one ingest call: which are skipped, loaded together, or taken one by one.

    Files come in order. Those to load form a chunk: batches of it go to the one-pass load
    as they arrive (while the threads prepare the next); `flush` finishes the chunk, or, when
    the one-pass load gave way, loads the whole chunk the staged way.
    """

    def __init__(self, load: ArraysLoad, one_by_one, skipped):
        self.load, self.one_by_one, self.skipped = load, one_by_one, skipped
        self.taken: set[str] = set()      # sha256s ingested (or being) in this run
        self.out: dict[int, object] = {}  # results not returned yet, by file index
        self.chunk: list[Prepared] = []   # files of the open chunk
        self.batch: list[Prepared] = []   # of those, not yet given to the one-pass load
        self.direct: DirectLoad | None = DirectLoad(load)

    def add(self, p: Prepared) -> list:
        """Take one prepared file; the results of a chunk it completes."""
        if p.known or p.sha256 in self.taken:
            self.out[p.index] = self.skipped(p)
            return []
        self.taken.add(p.sha256)
        self.chunk.append(p)
        self.batch.append(p)
        if sum(f.nbytes for f in self.batch) >= BATCH_BYTES:
            self._insert()
        return self.flush() if sum(f.nbytes for f in self.chunk) >= CHUNK_BYTES else []

    def _insert(self) -> None:
        if self.batch and self.direct is not None and not self.direct.add(self.batch):
            self.direct = None          # gave way: the chunk goes the staged way
        self.batch = []

    def flush(self) -> list:
        """Finish the open chunk; every result not returned yet, in file order."""
        if self.chunk:
            self._insert()
            counts = self.direct.finish() if self.direct is not None else None
            if counts is not None:
                self._record(self.chunk, counts, self.out)
            else:
                self._staged(self.chunk, self.out)
                self.load.drop()
            for p in self.chunk:
                p.array.unlink(missing_ok=True)
            self.chunk, self.direct = [], DirectLoad(self.load)
        results = [self.out[i] for i in sorted(self.out)]
        self.out = {}
        return results

    def close(self) -> None:
        """Roll back a chunk left open (an error stopped the run)."""
        if self.direct is not None:
            self.direct.abort()

    def _staged(self, todo: list[Prepared], out: dict) -> None:
        """The general way: staged, runs of good files loaded, the others one by one."""
        stats = self.load.stage(todo)
        if stats is None:
            if len(todo) == 1:      # the read rejects this file: the per-file path says why
                out[todo[0].index] = self.one_by_one(todo[0].path)
                return
            half = len(todo) // 2   # find the file the read rejects
            self._staged(todo[:half], out)
            self._staged(todo[half:], out)
            return
        if not in_file_order(stats):    # not expected; never guess line numbers
            for p in todo:
                out[p.index] = self.one_by_one(p.path)
            return
        segment = []
        for p, st in zip(todo, stats):
            if st[4]:           # a record to quarantine: the per-file path keeps its text
                self._load(segment, out)
                segment = []
                out[p.index] = self.one_by_one(p.path)
            else:
                segment.append((p, st))
        self._load(segment, out)

    def _load(self, segment: list, out: dict) -> None:
        if segment:
            self._record([p for p, _ in segment], self.load.load(segment), out)

    def _record(self, files: list[Prepared], counts: list, out: dict) -> None:
        for p, (read, accepted, ignored) in zip(files, counts):
            out[p.index] = self.load.result(p, read=read, accepted=accepted, ignored=ignored,
                                            duplicates=read - accepted - ignored)
