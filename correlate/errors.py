"""Error types a user can act on; each carries where the problem is."""

from __future__ import annotations


class PamcorrError(Exception):
    """Base for errors shown to the user as a message, never a traceback."""


class InputError(PamcorrError):
    """Bad input that stops an ingest, located by file and line."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.file, self.line = file, line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")


class StoreLockedError(PamcorrError):
    """Another process holds the DuckDB file."""


class StoreError(PamcorrError):
    """A database problem, mapped once from duckdb's exceptions."""
