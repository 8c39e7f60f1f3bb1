"""DuckDB store: connect in UTC, migrate, map database errors, keep ingest bookkeeping."""

from __future__ import annotations

import os
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from correlate.clock import now_utc
from correlate.errors import StoreError, StoreLockedError

DEFAULT_DB = "pamcorr.duckdb"

SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied TIMESTAMPTZ NOT NULL)
"""


def default_db_path() -> str:
    """`PAMCORR_DB` if set, else ./pamcorr.duckdb."""
    return os.environ.get("PAMCORR_DB") or DEFAULT_DB


def schema_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every schema file, in version order."""
    folder = resources.files("correlate") / "sql" / "schema"
    out = []
    for item in folder.iterdir():
        if item.name.endswith(".sql"):
            version = int(item.name.split("_", 1)[0])
            out.append((version, item.name, item.read_text(encoding="utf-8")))
    return sorted(out)


def _size(text: str) -> str:
    """A memory size such as '2GB' or '512 MiB', validated (it is formatted into SET)."""
    import re
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(text)
    return f"{match.group(1)}{match.group(2)}"


def read_sql(name: str) -> str:
    """The text of correlate/sql/NAME."""
    return (resources.files("correlate") / "sql" / name).read_text(encoding="utf-8")


TEMP_KIND_SQL = ("SELECT CASE WHEN table_type = 'VIEW' THEN 'VIEW' ELSE 'TABLE' END "
                 "FROM information_schema.tables WHERE table_name = ? "
                 "AND table_schema = 'main' AND table_catalog = 'temp'")


def drop_temp(con, name: str) -> None:
    """Drop the connection's temp view or table `name`, whichever it is (none: nothing).
    `name` is one of the code's own scratch names, never input."""
    for (kind,) in con.execute(TEMP_KIND_SQL, [name]).fetchall():
        con.execute(f"DROP {kind} {name}")


class Store:
    """One DuckDB file. Every connection is UTC; errors become pamcorr errors."""

    def __init__(self, path: str | os.PathLike | None = None, read_only: bool = False):
        self.path = str(path or default_db_path())
        if read_only and self.path != ":memory:" and not Path(self.path).exists():
            raise StoreError(
                f"no pamcorr database at {self.path}; run `pamcorr ingest` or `pamcorr demo` first")
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StoreLockedError(
                    f"{self.path} is in use by another process; wait for it to finish "
                    f"or use another file with --db") from None
            raise StoreError(f"cannot open {self.path}: {text}") from None
        self.con.execute("SET TimeZone = 'UTC'")
        # DuckDB draws a progress bar on stdout for long statements, even into a pipe, where it
        # would corrupt `pamcorr findings --format csv`.
        self.con.execute("SET enable_progress_bar = false")
        self.con.execute("SET preserve_insertion_order = false")
        limit = os.environ.get("PAMCORR_MEMORY_LIMIT")
        self.memory_limit = limit or None      # the user's; else DuckDB's default
        if limit:
            # Past this DuckDB spills to a temp folder beside the database instead of growing.
            try:
                self.con.execute(f"SET memory_limit = '{_size(limit)}'")
            except (duckdb.Error, ValueError):
                raise StoreError(f"PAMCORR_MEMORY_LIMIT={limit!r} is not a size such as 2GB "
                                 f"or 512MB") from None
        if not read_only:
            self.migrate()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def migrate(self) -> list[str]:
        """Apply the schema files not applied yet, all in one transaction: the store moves to
        the new version whole or stays where it was (and a new store is created in half the
        time of one commit per file)."""
        self.con.execute(SCHEMA_TABLE)
        done = {v for (v,) in self.con.execute("SELECT version FROM schema_version").fetchall()}
        pending = [f for f in schema_files() if f[0] not in done]
        if pending:
            with self.transaction():
                for version, name, sql in pending:
                    self.con.execute(sql)
                    self.con.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                                     [version, name, now_utc()])
        return [name for _, name, _ in pending]

    @contextmanager
    def transaction(self):
        """BEGIN ... COMMIT, ROLLBACK on any error; duckdb errors become StoreError."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except duckdb.Error as exc:
            self.con.execute("ROLLBACK")
            raise StoreError(str(exc)) from exc
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    def query(self, sql: str, params: list | dict | None = None) -> list[tuple]:
        try:
            return self.con.execute(sql, params or []).fetchall()
        except duckdb.Error as exc:
            raise StoreError(str(exc)) from exc

    def query_dicts(self, sql: str, params: list | dict | None = None) -> list[dict]:
        try:
            cur = self.con.execute(sql, params or [])
        except duckdb.Error as exc:
            raise StoreError(str(exc)) from exc
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: list | dict | None = None):
        rows = self.query(sql, params)
        return rows[0][0] if rows else None
