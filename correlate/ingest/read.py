"""Read: run a connector's staged batches (DuckDB readers, or a DataFrame its Python parser
made) into temp tables, the fast reader first and the exact one when it must."""

from __future__ import annotations

import gzip
import re
from dataclasses import replace
from pathlib import Path

import duckdb

from connectors.base import Staged
from correlate.errors import InputError, StoreError
from correlate.ingest.base import bound

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


def read_as(batch: Staged, path: str, literal: str) -> Staged:
    """The batch reading `literal` where it read `path` (see files.literal_path)."""
    if path == literal:
        return batch
    exact = batch.exact and read_as(batch.exact, path, literal)
    params = {k: literal if k == "path" and v == path else v for k, v in batch.params.items()}
    return replace(batch, params=params, exact=exact)


def stage(con, batch: Staged, name: str) -> None:
    """Run one batch into the temp table `name`, rows in file order."""
    if batch.frame is not None:
        # a callable frame is parsed only when this (exact) batch is needed. register() refuses
        # to run while a result is half-read (fetchone), so callers fetch results whole.
        con.register("src", batch.frame() if callable(batch.frame) else batch.frame)
    try:
        con.execute("SET preserve_insertion_order = true")  # rowid = file order
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {batch.sql}", bound(batch))
    finally:
        con.execute("SET preserve_insertion_order = false")
        if batch.frame is not None:
            con.unregister("src")


def stage_batch(con, batch: Staged, name: str, path: str) -> Staged:
    """Fast path first; the exact path when it fails or when rows need exact line numbers.

    Returns the batch that was staged (the fast one or its exact fallback).
    """
    used = batch
    try:
        stage(con, batch, name)
        if batch.exact is not None and con.execute(
                f"SELECT count(*) FROM {name} WHERE reason IS NOT NULL").fetchall()[0][0]:
            used = batch.exact
            stage(con, used, name)
    except duckdb.OutOfMemoryException as exc:     # the store's limit, not the file's fault
        raise StoreError(f"out of memory while reading {path}: {str(exc).splitlines()[0]} "
                         "(raise PAMCORR_MEMORY_LIMIT)") from exc
    except duckdb.Error as exc:
        used = batch
        while True:     # down the fallbacks: exact, then its own (bytes that are not UTF-8)
            if used.exact is None:
                raise InputError(f"cannot read: {str(exc).splitlines()[0]}", path) from None
            used = used.exact
            try:
                stage(con, used, name)
                break
            except duckdb.Error as again:
                exc = again
    return used
