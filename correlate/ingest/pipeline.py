"""The ingest pipeline: every file goes plan -> read -> check -> de-duplicate -> insert -> log.

`ingest` picks the strategy that carries a file through those stages (docs/ingest.md):
* many files (a connector with `stage_arrays`, e.g. CloudTrail's S3 layout): many.py reads
  many files' records in one statement and logs one row per file; a file it cannot take
  goes to the per-file pipeline at its place in the order;
* per file (`ingest_file`): plan.py, then the one-pass strategy (onepass.py) when the file
  is one activity batch, else or when that gives way the staged strategy (staged.py).
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from connectors.base import Options
from correlate.errors import InputError
from correlate.ingest import log, onepass, reingest as replace, staged
from correlate.ingest.base import FileResult
from correlate.ingest.files import expand_paths
from correlate.ingest.many import ingest_many
from correlate.ingest.plan import plan_file
from correlate.store import Store


def _kind(connector, kind: str | None) -> str:
    if kind is None:
        if len(connector.kinds) != 1 and "auto" not in connector.kinds:
            raise InputError(f"source {connector.name} needs --kind, one of "
                             f"{', '.join(connector.kinds)}")
        kind = "auto" if "auto" in connector.kinds else connector.kinds[0]
    if kind not in connector.kinds:
        raise InputError(f"source {connector.name} reads kinds {', '.join(connector.kinds)}, "
                         f"not {kind!r}")
    return kind


def ingest(store: Store, connector, kind: str, paths: list[str], options: Options,
           progress=None, warn=None, reingest: bool = False,
           reject: bool = False) -> list[FileResult]:
    """Ingest files with one connector. Files already ingested (same sha256) are skipped, unless
    `reingest`: then each file's earlier rows are replaced in the transaction that loads it
    (correlate/ingest/reingest.py). `warn(message)` hears of files a folder holds that are not
    read (correlate/ingest/files.py `expand_paths`). `reject` (the CLI and the weekly run): a
    file no record of which was accepted is removed again and marked `rejected`
    (reject_unread)."""
    kind = _kind(connector, kind)
    files = expand_paths(paths, warn)
    if getattr(connector, "stage_arrays", None) is not None and not reingest:
        results = ingest_many(store, connector, kind, files, options,
                              lambda path: ingest_file(store, connector, kind, path, options),
                              progress)
    else:
        results = []
        for n, path in enumerate(files, 1):
            if progress:
                progress(f"[{n}/{len(files)}] {path}")
            results.append(ingest_file(store, connector, kind, path, options, reingest))
    return reject_unread(store, results) if reject else results


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
            replace.remove(store.con, log.rejected_ids(store.con, r))
    return results


def ingest_file(store: Store, connector, kind: str, path: Path, options: Options,
                reingest: bool = False) -> FileResult:
    """Ingest one file; a file that cannot be read (a cut or false .gz, an I/O error) is an
    InputError naming it, not a traceback. Nothing of it is stored then."""
    try:
        with ThreadPoolExecutor(max_workers=2) as pool, ExitStack() as scratch:
            plan = plan_file(store.con, connector, kind, path, options, reingest, pool, scratch)
            if isinstance(plan, FileResult):
                return plan                         # seen before: skipped
            if onepass.usable(plan):
                result = onepass.load(store, plan)
                if result is not None:
                    return result
            return staged.load(store, plan, pool)
    except (EOFError, OSError, zlib.error) as exc:   # gzip.BadGzipFile is an OSError
        raise InputError(f"cannot read: {exc or type(exc).__name__}", str(path)) from None
