"""Ingest progress for `pamcorr ingest` and `pamcorr run`: on a terminal a tqdm bar over the bytes
of the files to read (sizes known up front), with files done, rate and ETA; else one line per
file; with --no-progress nothing.

The bar is driven by ingest's own `progress(message)` callback, called once before each file
(`[n/N] path`): the files before it are done. No per-row work is added to ingest; a small thread
redraws the bar twice a second so that the elapsed time moves while one big file is read."""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path

from correlate.errors import InputError, printable

STEP = re.compile(r"\[\d+/\d+\] (.*)\Z", re.DOTALL)
REDRAW_S = 0.5


def planned_files(patterns, expand) -> list[Path]:
    """The files `patterns` name (each expanded alone; one matching nothing is left to ingest to
    report), for the bar's total. `expand` is correlate.ingest.expand_paths."""
    files: list[Path] = []
    for pattern in patterns:
        try:
            files.extend(expand([pattern]))
        except InputError:
            continue
    return files


class IngestProgress:
    """The `progress` callback for correlate.ingest.ingest, and a context manager around it."""

    def __init__(self, files, enabled: bool = True, stream=None, say=None):
        self.stream = stream or sys.stderr
        self.say = say                # the one-line-per-file fallback (None: silent)
        self.bar = None
        self.current: str | None = None
        self.done = 0
        self.sizes: dict[str, int] = {}
        for f in files:
            try:
                self.sizes[str(f)] = os.path.getsize(f)
            except OSError:
                self.sizes[str(f)] = 0
        self.count = len(files)
        self.files_done = 0
        if enabled and _is_tty(self.stream):
            from tqdm import tqdm
            self.bar = tqdm(total=sum(self.sizes.values()), unit="B", unit_scale=True,
                            unit_divisor=1024, desc="ingest", file=self.stream,
                            dynamic_ncols=True, mininterval=REDRAW_S, leave=True)
            self.stop = threading.Event()
            self.redraw = threading.Thread(target=self._redraw, daemon=True)
            self.redraw.start()
        elif not enabled:
            self.say = None

    def __call__(self, message: str) -> None:
        if self.bar is None:
            if self.say:
                self.say(f"ingesting {message}")
            return
        found = STEP.match(message)
        self._finish_current()
        self.current = found.group(1) if found else None
        name = Path(self.current).name if self.current else message
        self.bar.set_postfix_str(printable(f"file {self.files_done + 1}/{self.count} {name}"),
                                 refresh=False)
        self.bar.refresh()

    def note(self, message: str, fallback) -> None:
        """A warning while the bar is drawn goes above it, not into it."""
        if self.bar is None:
            fallback(message)
        else:
            self.bar.write(printable(message), file=self.stream)

    def _finish_current(self) -> None:
        if self.current is not None:
            self.done += self.sizes.get(self.current, 0)
            self.files_done += 1
            self.current = None
            self.bar.n = min(self.done, self.bar.total)

    def _redraw(self) -> None:
        while not self.stop.wait(REDRAW_S):
            self.bar.refresh()

    def finish(self, complete: bool = True) -> None:
        """Close the bar (once): at 100% when the ingest completed, else where it stopped."""
        if self.bar is None or self.stop.is_set():
            return
        self.stop.set()
        self.redraw.join()
        if complete:
            self._finish_current()
            self.bar.n = self.bar.total
            self.bar.set_postfix_str(f"{self.files_done}/{self.count} file(s)", refresh=False)
        self.bar.close()

    def __enter__(self) -> "IngestProgress":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.finish(complete=kind is None)


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
