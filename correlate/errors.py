"""Error types a user can act on; each carries where the problem is."""

from __future__ import annotations

import errno as _errno
import os


def printable(text) -> str:
    """`text` for a terminal: control, bidi and other non-printable characters (and the surrogates
    of a file name that is not UTF-8) as Python escapes, so a name holding a newline or U+202E
    cannot forge or disguise a line of pamcorr's output."""
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class PamcorrError(Exception):
    """Base for errors shown to the user as a message, never a traceback."""


class InputError(PamcorrError):
    """Bad input that stops an ingest, located by file and line."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.file, self.line = file, line
        name = printable(file) if file else file
        where = f"{name}:{line}: " if file and line else (f"{name}: " if file else "")
        super().__init__(f"{where}{message}")


class ConfigError(InputError):
    """A config entry that cannot be used as written (an accepted exception without a reason, a
    glob that can match nothing): a usage error, exit 2, naming the file and the entry."""

    exit_code = 2


class StoreLockedError(PamcorrError):
    """Another process holds the DuckDB file."""


class StoreError(PamcorrError):
    """A database problem, mapped once from duckdb's exceptions."""


# errno values that mean "no room": a full disk, a quota, a file-size limit (ulimit -f).
NO_ROOM = {_errno.ENOSPC, _errno.EFBIG, getattr(_errno, "EDQUOT", _errno.ENOSPC)}


class OutputError(PamcorrError):
    """A file pamcorr writes (a report, a bundle, the database) could not be written."""

    def __init__(self, path, exc: BaseException | None = None):
        self.path, self.cause = path, exc
        why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc or "")
        if isinstance(exc, OSError) and exc.errno in NO_ROOM:
            why += " (disk full or file-size limit)"
        super().__init__(f"could not write {printable(path)}: {why}".rstrip(": "))
