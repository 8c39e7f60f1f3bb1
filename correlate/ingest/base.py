"""Small pieces every stage of the ingest pipeline shares: a file's result and counts, the
part of a file a read begins at, and one way to ask DuckDB for a number."""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.base import Staged


@dataclass
class FileResult:
    """Counts for one file; read = accepted + ignored + quarantined + duplicates."""

    file: str
    source: str
    kind: str
    sha256: str
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    ignored: int = 0            # well-formed records of types pamcorr does not judge
    skipped: bool = False       # same sha256 ingested before
    reasons: dict = field(default_factory=dict)
    note: str | None = None     # why a skipped file may want --reingest (other options)
    replaced: str | None = None  # --reingest: what changed (`-N +M activity rows, ...`)
    warnings: list = field(default_factory=list)   # about the whole file (a connector's)
    rejected: bool = False      # every record quarantined: nothing of it kept, not recorded
    guess: str | None = None    # what a rejected file looks like (connectors.registry)
    plain_sha256: str | None = None  # of the uncompressed bytes, when the read inflated it whole

    @property
    def balanced(self) -> bool:
        return self.read == self.accepted + self.ignored + self.quarantined + self.duplicates

    def add(self, counts: dict) -> None:
        """Add one batch's counts (read, accepted, quarantined, duplicates, ignored)."""
        for name in ("read", "accepted", "quarantined", "duplicates", "ignored"):
            setattr(self, name, getattr(self, name) + counts[name])


@dataclass(frozen=True)
class Tail:
    """Where reading a grown file begins: the end of its last ingest (byte, lines before)."""

    offset: int = 0
    lines: int = 0


def scalar(con, sql: str, params: list | dict = ()) -> int:
    """The one value `sql` returns (fetched whole: a half-read result blocks the connection)."""
    return con.execute(sql, params).fetchall()[0][0]


def bound(batch: Staged) -> dict:
    """The batch's parameters its SQL uses."""
    return {k: v for k, v in batch.params.items() if f"${k}" in batch.sql}
