"""Watch's state in the store: spooled chunks, followed-file offsets, and the rewrite that
files a chunk's rows under the followed file's own name (so the weekly run does not read them
again). Each chunk is committed in one transaction with its verdicts and alerts (judge.py).

Crash safety, step by step (docs/watch.md): a chunk is written to the spool (fsync, rename)
before it is ingested; ingest commits its rows; then one transaction moves its ingest_log rows
to the followed file, stores the new offset, the verdicts and the pending alerts; then the
spool copy is removed. A restart finds any chunk still spooled and finishes it: ingest skips
what it already stored (same sha256), and a chunk whose end the stored offset has passed is
only removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from correlate.clock import now_utc
from correlate.ingest import log as ingest_log
from correlate.watch.sources import Chunk, Position

LINE_TABLES_SQL = ("SELECT table_name FROM information_schema.columns c "
                   "JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
                   "WHERE c.table_schema = 'main' AND t.table_type = 'BASE TABLE' "
                   "AND column_name IN ('ingest_id', 'line') GROUP BY 1 HAVING count(*) = 2 "
                   "ORDER BY 1")
POSITION_SQL = ("SELECT dev, inode, offset_bytes, lines FROM watch_offsets "
                "WHERE source = ? AND kind = ? AND path = ?")
SAVE_SQL = ("INSERT OR REPLACE INTO watch_offsets (source, kind, path, dev, inode, offset_bytes, "
            "lines, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
CHUNK_IDS_SQL = "SELECT ingest_id FROM ingest_log WHERE file = ? ORDER BY ingest_id"


def position(con, source: str, kind: str, path: str) -> Position | None:
    row = con.execute(POSITION_SQL, [source, kind, path]).fetchall()
    return Position(*row[0]) if row else None


class Spool:
    """The folder chunks wait in between being read and being committed."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        (self.folder / "chunks").mkdir(parents=True, exist_ok=True)

    def _next(self) -> int:
        import time
        return time.time_ns()      # never reused: a chunk's name is its ingest_log key

    def write(self, chunk: Chunk) -> Path:
        """The chunk as a file with the followed file's own name (connectors read the name:
        the generic suffix, auditd's host fallback), under a numbered folder; durable."""
        final = self.folder / "chunks" / f"{self._next():020d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        data = chunk.data if chunk.data.endswith(b"\n") else chunk.data + b"\n"
        target = tmp / Path(chunk.path).name
        with open(target, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        meta = {k: getattr(chunk, k) for k in ("source", "kind", "path", "start", "end",
                                               "lines_before", "lines", "sha_prefix", "dev",
                                               "inode")}
        (tmp / "chunk.json").write_text(json.dumps(meta))
        os.rename(tmp, final)
        return final / target.name

    def leftovers(self) -> list[tuple[Path, Chunk]]:
        """Chunks spooled by an earlier process that did not finish them, oldest first."""
        out = []
        for folder in sorted((self.folder / "chunks").iterdir()):
            if folder.name.endswith(".tmp"):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            meta = json.loads((folder / "chunk.json").read_text())
            out.append((folder / Path(meta["path"]).name, Chunk(data=b"", **meta)))
        return out

    @staticmethod
    def remove(path: Path) -> None:
        shutil.rmtree(path.parent, ignore_errors=True)


def line_tables(con) -> list[str]:
    return [t for (t,) in con.execute(LINE_TABLES_SQL).fetchall()]


def file_chunk(con, chunk: Chunk, spooled: Path, tables: list[str]) -> list[int]:
    """Inside the caller's transaction: give what ingest stored from `spooled` the followed
    file's name, sha256 (of its content up to the chunk's end), size and line numbers, as if
    ingest had read the grown file's tail itself; store the new offset. Returns the ingest ids
    (empty when ingest found nothing new, when a row marks the part as read)."""
    ids = [i for (i,) in con.execute(CHUNK_IDS_SQL, [str(spooled)]).fetchall()]
    now = now_utc()
    if not ids:
        ingest_log.mark_followed(con, chunk.source, chunk.kind, chunk.path, chunk.sha_prefix,
                                 chunk.end, now, chunk.start, chunk.lines_before + 1)
    for i in ids:
        ingest_log.move_chunk(con, i, chunk.path, chunk.sha_prefix, chunk.end, chunk.start,
                              chunk.lines_before + 1)
    if ids and chunk.lines_before:
        for table in tables:
            con.execute(f"UPDATE main.{table} SET line = line + ? WHERE ingest_id IN "
                        f"(SELECT unnest(?::INTEGER[]))", [chunk.lines_before, ids])
    if ids:
        con.execute("UPDATE quarantine SET file = ? WHERE ingest_id IN (SELECT unnest(?::INTEGER[]))",
                    [chunk.path, ids])
    con.execute(SAVE_SQL, [chunk.source, chunk.kind, chunk.path, chunk.dev, chunk.inode,
                           chunk.end, chunk.lines_before + chunk.lines, now])
    return ids
