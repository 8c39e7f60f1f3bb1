"""Coverage of the weekly run per configured source (each `[[sources]]` entry, every kind): did
its paths match a file, and does what it brought hold anything in the week?

The per-connector check (correlate/jobs.py `coverage`) looks at activity by connector name, so two
generic feeds merge and one going quiet is invisible, and approvals and tickets are not looked
at: a typo in the approvals glob would judge the week against stale approvals. Here a source's
rows are found through the files it matched (ingest_log by path or by sha256, its connector's
only), in every table that carries time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from correlate.store import Store

# ingest_ids of a connector's files matched by path, or by content (a file skipped as already
# ingested under another name).
SOURCE_INGESTS_SQL = """
SELECT ingest_id FROM ingest_log
WHERE finished IS NOT NULL AND source = $connector
  AND (file IN (SELECT unnest($files::VARCHAR[])) OR sha256 IN (SELECT unnest($shas::VARCHAR[])))
"""

# Per source (its index in the config): records of its files in the week, and the latest one before it. A record is
# in the week when its span [t0, t1] meets [start, end): an action or a transition at a time in
# it, an approval window or an open ticket overlapping it.
SOURCE_DATA_SQL = """
WITH src AS (
    SELECT unnest($sources::INTEGER[]) AS source_no, unnest($ids::INTEGER[]) AS ingest_id
), records AS (
    SELECT ingest_id, ts AS t0, ts AS t1 FROM activity
    UNION ALL SELECT ingest_id, start_ts, end_ts FROM approvals
    UNION ALL SELECT ingest_id, ts, ts FROM approval_events
    UNION ALL SELECT ingest_id, opened, coalesce(closed, 'infinity'::TIMESTAMPTZ) FROM tickets
    UNION ALL SELECT ingest_id, ts, ts FROM ticket_history
)
SELECT s.source_no, count(*) AS total,
       count(*) FILTER (WHERE r.t0 < $end AND r.t1 >= $start) AS rows,
       max(r.t0) FILTER (WHERE r.t0 < $start) AS last_before
FROM src s JOIN records r USING (ingest_id)
GROUP BY s.source_no
"""

# Kinds whose rows carry no time (mappings): matching a file is all that can be asked of them.
UNTIMED_KINDS = ("identities", "targets")


@dataclass
class SourceCoverage:
    """One configured source in the week: PASS, or WARN (matched no file, or nothing in the
    week)."""

    name: str
    connector: str
    kind: str | None
    files: int                    # files its paths matched
    rows: int                     # its records in the week
    last_before: datetime | None  # its latest record before the week
    status: str
    message: str


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def source_coverage(store: Store, sources, matched: dict, week) -> list[SourceCoverage]:
    """`sources`: the config's SourceConfig entries; `matched`: index -> (files, sha256s) the
    run found for each (correlate/jobs.py `ingest_sources`); `week`: label, start, end. Two
    entries may share a name (it defaults to the connector's): they are told apart by index."""
    numbers, ids = [], []
    for i, src in enumerate(sources):
        files, shas = matched.get(i, ([], []))
        if not files:
            continue
        for (ingest_id,) in store.query(SOURCE_INGESTS_SQL, {
                "connector": src.connector, "files": list(files), "shas": list(shas)}):
            numbers.append(i)
            ids.append(ingest_id)
    data = {r["source_no"]: r for r in store.query_dicts(
        SOURCE_DATA_SQL, {"sources": numbers, "ids": ids, "start": week.start, "end": week.end})}
    out = []
    for i, src in enumerate(sources):
        files = len(matched.get(i, ([], []))[0])
        what = f"{src.name} ({src.connector}{' ' + src.kind if src.kind else ''})"
        r = data.get(i, {"total": 0, "rows": 0, "last_before": None})
        if not files:
            status, msg = "WARN", (f"{what}: its paths match no file "
                                   f"({', '.join(src.paths)}); {week.label} is judged without it")
        elif src.kind in UNTIMED_KINDS:
            status, msg = "PASS", f"{what}: {files} file(s) (mappings, not bound to a time)"
        elif not r["rows"]:
            seen = (f"latest record before it {_iso(r['last_before'])}" if r["last_before"]
                    else "no record on file" if not r["total"] else "its records are all later")
            status, msg = "WARN", f"{what}: nothing in {week.label} ({files} file(s), {seen})"
        else:
            status, msg = "PASS", f"{what}: {r['rows']:,} record(s) in {week.label}"
        out.append(SourceCoverage(src.name, src.connector, src.kind, files, r["rows"],
                                  r["last_before"], status, msg))
    return out
