"""Strategy: staged, the exact one. Every batch is read into a temp table (the fast reader,
or the exact one when lines or quarantine need it); then, in one transaction, each batch is
checked (quarantined with file, line and reason), de-duplicated, inserted (load.py), and the
file logged. --reingest replaces the file's earlier rows in that same transaction."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from correlate.ingest import log, reingest
from correlate.ingest.base import FileResult
from correlate.ingest.load import load_batch
from correlate.ingest.plan import Plan
from correlate.ingest.read import has_blank_lines, stage, stage_batch
from correlate.store import Store

REASONS = ("SELECT reason, count(*) FROM quarantine WHERE ingest_id = ? GROUP BY 1 "
           "ORDER BY 2 DESC, 1")


def read(con, plan: Plan, pool: ThreadPoolExecutor) -> list[int | None]:
    """Stage every batch as stage_<i> (outside the transaction: a failed fast read must not
    abort it); per batch the first line when the store numbers its rows, else None."""
    blanks = (pool.submit(has_blank_lines, plan.read_from)
              if any(b.skips_blank_lines for b in plan.staged) else None)
    used = [stage_batch(con, batch, f"stage_{i}", str(plan.path))
            for i, batch in enumerate(plan.staged)]
    if blanks is not None and blanks.result():
        # Row positions are not line numbers here: read those batches exactly.
        for i, batch in enumerate(plan.staged):
            if used[i].skips_blank_lines and batch.exact is not None:
                stage(con, batch.exact, f"stage_{i}")
                used[i] = batch.exact
    return [u.first_line if u.number_lines else None for u in used]


def load(store: Store, plan: Plan, pool: ThreadPoolExecutor) -> FileResult:
    con = store.con
    numbered = read(con, plan, pool)
    if not plan.reingest and log.seen(con, plan.digest, plan.source, plan.kind):
        return plan.skipped(con)        # the same content under another name
    result = plan.result()
    with store.transaction():
        prior = (log.prior_ingests(con, plan.source, plan.kind, str(plan.path), plan.digest)
                 if plan.reingest else [])
        before = reingest.row_counts(con, prior) if prior else None
        reingest.remove(con, prior)
        ingest_id = log.next_id(con)
        for i, batch in enumerate(plan.staged):
            result.add(load_batch(con, batch.table, f"stage_{i}", plan.source, ingest_id,
                                  str(plan.path), numbered[i], plan.tail.lines,
                                  getattr(store, "known_ids", None)))
        result.reasons = dict(con.execute(REASONS, [ingest_id]).fetchall())
        log.record(con, [plan.entry(ingest_id, result)])
        if before is not None:
            result.replaced = reingest.describe(before, reingest.row_counts(con, [ingest_id]))
    return result
