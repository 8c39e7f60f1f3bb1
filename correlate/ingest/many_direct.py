"""The one-pass way of correlate/ingest/many.py: Records arrays straight into activity.

One transaction per chunk of files. `add` inserts a batch of arrays with one INSERT that
reads and writes them in the files' order (no temp copy of the rows), so the store can read
one batch while worker threads still prepare the next; `finish` drops repeats and rows
stored before, sets line and act_id from the rows' positions (as the per-file path numbers
them), records keys and one ingest_log row per file, and commits.

Optimistic: a record to quarantine or to ignore aborts the INSERT (DuckDB's `error()`), as
does a file the reader rejects; the transaction rolls back and the caller takes the staged
way (correlate/ingest/many_load.py) for the whole chunk.
"""

from __future__ import annotations

import duckdb

from correlate.ingest import log
from correlate.ingest.activity import intern_keys, key_sql, optional_columns
from correlate.ingest.files import duckdb_path
from correlate.ingest.many_load import ID, MAX_DENSE, MINE, STORED, ArraysLoad, in_file_order
from correlate.redact import redact_sql

INSERT = f"""
INSERT INTO activity (act_id, source, event_id, ts, account, target, action, detail, session_id,
                      actor, key_id, ingest_id, line{{names}})
SELECT 0, $source, s.event_id, s.ts, s.account, s.target, s.action, {{detail}}, s.session_id,
       s.actor, {{key}}, {ID}, 0{{values}}
FROM ({{sql}}) s
WHERE CASE WHEN s.reason IS NULL AND NOT s.ignored THEN true
           ELSE error('pamcorr: a record to quarantine or ignore') END
"""
ROWS_BY_FILE = f"SELECT ingest_id, min(rowid), max(rowid), count(*) FROM activity WHERE {MINE} " \
               "GROUP BY ingest_id"
REPEATS = f"SELECT count(*) - count(DISTINCT event_id) FROM activity WHERE {MINE}"
# Within the chunk the first (file, line) of an event_id wins: rows are stored in that order.
DROP_REPEATS = f"""
DELETE FROM activity WHERE {MINE} AND rowid IN (
    SELECT rowid FROM activity WHERE {MINE}
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY rowid) > 1)
"""
DROP_STORED = f"""
DELETE FROM activity WHERE {MINE} AND event_id IN (
    SELECT event_id FROM activity WHERE source = $source AND NOT coalesce({MINE}, false))
"""
KEPT = f"SELECT ingest_id, count(*), max(rowid) FROM activity WHERE {MINE} GROUP BY ingest_id"
NUMBER = f"""
UPDATE activity SET line = rowid - $firsts[ingest_id - $first + 1] + 1,
    act_id = $bases[ingest_id - $first + 1] + rowid - $firsts[ingest_id - $first + 1] + 1
WHERE {MINE}
"""


class DirectLoad:
    """One open transaction of the one-pass load; `add` batches in order, then `finish`."""

    def __init__(self, load: ArraysLoad):
        self.load, self.con = load, load.con
        self.files: list = []
        self.first_id: int | None = None
        self.select: tuple[str, str] = ("", "")

    def add(self, files) -> bool:
        """Insert `files` (after those added before); False: rolled back, nothing kept."""
        con, paths = self.con, [duckdb_path(str(p.array)) for p in files]
        if self.first_id is None:
            try:
                self.select = optional_columns(self.load.columns(paths), "s.")
            except duckdb.Error:
                return False
            con.execute("SET preserve_insertion_order = true")     # rows kept in file order
            con.execute("BEGIN TRANSACTION")
            self.first_id = log.next_id(con)
        names, values = self.select
        try:
            con.execute(INSERT.format(
                sql=self.load.sql, names=names, values=values, detail=redact_sql("s.detail"),
                key=key_sql("s.account", "s.target")),
                {**self.load.params, "paths": paths, "source": self.load.source,
                 **self.load.ids(files, self.first_id + len(self.files))})
        except duckdb.Error:     # a record to quarantine or ignore, or a file it cannot read
            self.abort()
            return False
        self.files += files
        return True

    def abort(self) -> None:
        if self.first_id is not None:
            self.con.execute("ROLLBACK")
            self.con.execute("SET preserve_insertion_order = false")
            self.first_id = None

    def finish(self) -> list[tuple[int, int, int]] | None:
        """(read, accepted, ignored) per file, committed; None: rolled back, nothing kept."""
        con, first_id, source = self.con, self.first_id, self.load.source
        span = {"first": first_id, "last": first_id + len(self.files) - 1}
        try:
            rows = {i: r for i, *r in con.execute(ROWS_BY_FILE, span).fetchall()}
            stats = [rows.get(first_id + k, (None, None, 0)) for k in range(len(self.files))]
            if not in_file_order(stats):    # not expected; never guess line numbers
                self.abort()
                return None
            if con.execute(REPEATS, span).fetchone()[0]:
                con.execute(DROP_REPEATS, span)
            if con.execute(STORED, {**span, "source": source}).fetchone()[0]:
                con.execute(DROP_STORED, {**span, "source": source})
            kept = {i: (n, last) for i, n, last in con.execute(KEPT, span).fetchall()}
            firsts, bases = [], []
            base = con.execute(MAX_DENSE).fetchone()[0]
            for k, (first, _, _) in enumerate(stats):
                firsts.append(first)
                bases.append(base)
                if first_id + k in kept:    # the next file starts past its last act_id
                    base += kept[first_id + k][1] - first + 1
            con.execute(NUMBER, {**span, "firsts": firsts, "bases": bases})
            intern_keys(self.con, first_id, span["last"])
            counts = [(n, kept.get(first_id + k, (0,))[0], 0)
                      for k, (_, _, n) in enumerate(stats)]
            self.load.log(self.files, first_id, counts)
            con.execute("COMMIT")
        except BaseException:
            self.abort()
            raise
        con.execute("SET preserve_insertion_order = false")
        self.first_id = None
        return counts
