"""The staged way of correlate/ingest/many.py: Records arrays of many files, loaded per file.

The general way, with the result of ingesting the files one by one: the arrays are read into
a temp table (`stage`), per-file counts come from it, and runs of files without a record to
quarantine are loaded from it (`load`; ignored records counted by type). The one-pass way
(correlate/ingest/many_direct.py) shares the helpers here.

The temp array files are named `<index>.json`; `$ids[index - $base + 1]` maps a row's file
to its ingest_id. `line` is the record's ordinal in its file; `rid` its place among the
file's activity records, which is what the per-file path adds to max(act_id).
"""

from __future__ import annotations

import duckdb

from correlate.clock import now_utc
from correlate.ingest import log
from correlate.ingest.base import FileResult
from correlate.ingest.activity import HASHED_IDS, intern_keys, key_sql, optional_columns
from correlate.ingest.files import duckdb_path
from correlate.redact import redact_sql

FILE_INDEX = "(parse_filename(s.filename, true)::INTEGER - $base + 1)"
ID = f"$ids[{FILE_INDEX}]"

MINE = "ingest_id BETWEEN $first AND $last"
# Rows of the source stored before (any but the files being loaded).
STORED = f"""
SELECT count(*) FROM (SELECT 1 FROM activity WHERE source = $source
                      AND NOT coalesce({MINE}, false) LIMIT 1)
"""
FILE_STATS = """
SELECT filename, min(rowid), max(rowid), count(*), count(*) FILTER (WHERE ignored),
       count(*) FILTER (WHERE reason IS NOT NULL)
FROM many_stage GROUP BY filename
"""
STAGED_ROWS = f"""
SELECT s.* EXCLUDE (filename, ignored, reason, event_type), {ID} AS ingest_id,
       s.rowid - $firsts[{FILE_INDEX}] + 1 AS line, {{rid}} AS rid
FROM many_stage s WHERE s.rowid BETWEEN $lo AND $hi AND NOT s.ignored
"""
RID_PLAIN = f"s.rowid - $firsts[{FILE_INDEX}]"
RID_COUNTED = "row_number() OVER (PARTITION BY s.filename ORDER BY s.rowid) - 1"
STAGED_REPEATS = """
SELECT count(*) - count(DISTINCT event_id) FROM many_stage
WHERE rowid BETWEEN $lo AND $hi AND NOT ignored
"""
NOT_STORED = ("ANTI JOIN (SELECT event_id FROM activity WHERE source = $source) a "
              "ON a.event_id = r.event_id")
FIRST_ONLY = "QUALIFY row_number() OVER (PARTITION BY r.event_id ORDER BY r.ingest_id, r.line) = 1"
SPANS = "SELECT ingest_id, count(*), max(rid) + 1 FROM {fresh} GROUP BY ingest_id"
STAGED_INSERT = """
INSERT INTO activity (act_id, source, event_id, ts, account, target, action, detail, session_id,
                      actor, key_id, ingest_id, line{names})
SELECT $bases[f.ingest_id - $first + 1] + f.rid + 1, $source, f.event_id, f.ts, f.account,
       f.target, f.action, {detail}, f.session_id, f.actor, {key}, f.ingest_id, f.line{values}
FROM {fresh} f
"""
IGNORED = f"""
INSERT INTO ignored_counts
SELECT {ID}, coalesce(s.event_type, '?'), count(*)
FROM many_stage s WHERE s.rowid BETWEEN $lo AND $hi AND s.ignored GROUP BY ALL
"""

# The staged path's dense act_ids count up from here (hashed ids of one-pass loads lie above).
MAX_DENSE = f"SELECT coalesce(max(act_id) FILTER (WHERE act_id < {HASHED_IDS}), 0) FROM activity"


def in_file_order(stats: list[tuple]) -> bool:
    """Each file's rows (first, last, count, ...) are consecutive and follow the file before."""
    last = -1
    for first, final, n, *_ in stats:
        if n:
            if first <= last or final - first + 1 != n:
                return False
            last = final
    return True


class ArraysLoad:
    """Loads prepared files (`.index`, `.array`, `.path`, `.sha256`, `.size`) of one source."""

    def __init__(self, store, source: str, kind: str, staged, options: str | None = None):
        self.store, self.con, self.source, self.kind = store, store.con, source, kind
        self.options = options      # as ingest_log stores them (log.options_json)
        self.sql, self.params = staged.sql, staged.params
        self._present: set[str] | None = None

    def columns(self, paths: list[str]) -> set[str]:
        """The columns the staging SQL gives (bound once, on some of the files)."""
        if self._present is None:
            self._present = {d[0] for d in self.con.execute(
                f"SELECT * FROM ({self.sql}) s LIMIT 0", {**self.params, "paths": paths}
            ).description}
        return self._present

    def ids(self, files, first_id: int) -> dict:
        """`$base` and `$ids` (by file index) for `files`, numbered from `first_id`."""
        base = files[0].index
        ids = [None] * (files[-1].index - base + 1)
        for k, p in enumerate(files):
            ids[p.index - base] = first_id + k
        return {"base": base, "ids": ids}

    def stage(self, files) -> list[tuple] | None:
        """Read `files` into many_stage; per file (first row, last row, records, ignored,
        to quarantine), or None when the read fails (some file is not what it expects)."""
        con = self.con
        con.execute("SET preserve_insertion_order = true")     # rowid = file, then record order
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE many_stage AS {self.sql}",
                        {**self.params, "paths": [duckdb_path(str(p.array)) for p in files]})
        except duckdb.InvalidInputException:
            return None
        finally:
            con.execute("SET preserve_insertion_order = false")
        stats = {name: row for name, *row in con.execute(FILE_STATS).fetchall()}
        return [tuple(stats.get(str(p.array), (None, None, 0, 0, 0))) for p in files]

    def load(self, segment: list) -> list[tuple[int, int, int]]:
        """(read, accepted, ignored) per file of `segment` ((file, stats) of staged files
        none of whose records is to quarantine), in one transaction."""
        con, files = self.con, [p for p, _ in segment]
        with self.store.transaction():
            first_id = log.next_id(con)
            accepted = self._staged_activity(segment, first_id)
            counts = [(st[2], accepted.get(first_id + k, 0), st[3])
                      for k, (_, st) in enumerate(segment)]
            self.log(files, first_id, counts)
        return counts

    def drop(self) -> None:
        self.con.execute("DROP TABLE IF EXISTS many_stage")

    def _staged_activity(self, segment, first_id) -> dict[int, int]:
        con = self.con
        full = [(p, st) for p, st in segment if st[2]]
        if not full:
            return {}
        last_id = first_id + len(segment) - 1
        base_index = segment[0][0].index
        firsts = [None] * (segment[-1][0].index - base_index + 1)
        for p, st in full:
            firsts[p.index - base_index] = st[0]
        params = {"lo": full[0][1][0], "hi": full[-1][1][1], "firsts": firsts,
                  **self.ids([p for p, _ in segment], first_id)}
        mixed = any(0 < st[3] < st[2] for _, st in full)
        rows = STAGED_ROWS.format(rid=RID_COUNTED if mixed else RID_PLAIN)
        repeats = con.execute(STAGED_REPEATS, {"lo": params["lo"], "hi": params["hi"]}
                              ).fetchone()[0]
        stored = con.execute(STORED, {"first": first_id, "last": last_id,
                                      "source": self.source}).fetchone()[0]
        fresh, bound = f"({rows})", params      # every row is new: no copy of them
        if repeats or stored:
            con.execute(f"CREATE OR REPLACE TEMP TABLE many_new AS SELECT r.* FROM ({rows}) r "
                        f"{NOT_STORED if stored else ''} {FIRST_ONLY if repeats else ''}",
                        {**params, **({"source": self.source} if stored else {})})
            fresh, bound = "many_new", {}
        spans = {i: (n, s) for i, n, s in
                 con.execute(SPANS.format(fresh=fresh), bound).fetchall()}
        base = con.execute(MAX_DENSE).fetchone()[0]
        bases = []
        for k in range(len(segment)):   # each file starts past the act_ids the one before took
            bases.append(base)
            base += spans.get(first_id + k, (0, 0))[1]
        present = {r[0] for r in con.execute("DESCRIBE many_stage").fetchall()}
        names, values = optional_columns(present, "f.")
        con.execute(STAGED_INSERT.format(
            fresh=fresh, names=names, values=values, detail=redact_sql("f.detail"),
            key=key_sql("f.account", "f.target")),
            {**bound, "bases": bases, "first": first_id, "source": self.source})
        intern_keys(con, first_id, last_id)
        if any(st[3] for _, st in full):
            con.execute(IGNORED, {k: params[k] for k in ("lo", "hi", "base", "ids")})
        con.execute("DROP TABLE IF EXISTS many_new")
        return {i: n for i, (n, _) in spans.items()}

    def log(self, files, first_id: int, counts) -> None:
        """One finished ingest_log row per file, ids from `first_id`."""
        now = now_utc()
        log.record(self.con, [
            log.Entry(first_id + k, self.result(p, read=r, accepted=a, ignored=g,
                                                duplicates=r - a - g),
                      p.size, now, now, self.options)
            for k, (p, (r, a, g)) in enumerate(zip(files, counts))])

    def result(self, p, **counts) -> FileResult:
        """A prepared file's result with these counts."""
        return FileResult(str(p.path), self.source, self.kind, p.sha256,
                          plain_sha256=p.plain_sha256, **counts)
