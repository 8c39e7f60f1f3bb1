"""Sequence rules across batches: the member-rule matches of earlier batches, kept in the store
for as long as a sequence can span (watch_seq_events, schema 060).

Each batch's detection pass (judge.py) builds det_events from the batch's new actions; this
hook, run inside that pass, first keeps the batch's matches of any rule a sequence lists, then
adds the kept matches of earlier batches that could share a sequence with them (same value of
a column some sequence groups by, within the look-back of the batch's times), then deletes
what fell out of the look-back. The sequences then run over both. A sequence completed by the
batch alerts on its new members (the earlier ones were judged with their own batch); its
`sequence_id` names the whole sequence. All of it in the batch's transaction.

The look-back is the longest timespan of the sequence rules loaded (15 min with the shipped
rules), counted back from the newest event time kept. A match time-stamped more than a day
ahead of the clock is not kept and does not move that reference (one bad timestamp would
otherwise empty the look-back); it still pairs within its own batch.
"""

from __future__ import annotations

from datetime import datetime

COLUMNS = "rule_id, act_id, ts, account, target, session_id, actor, detail, source, approval_id"

# The batch's matches of member rules (a restart re-judging a batch finds them kept already).
KEEP_SQL = f"""
INSERT INTO watch_seq_events
SELECT {COLUMNS} FROM det_events e
WHERE list_contains($members, e.rule_id)
  AND NOT EXISTS (SELECT 1 FROM watch_seq_events k
                  WHERE k.act_id = e.act_id AND k.rule_id = e.rule_id)
"""
# Earlier matches that can share a sequence with one of the batch's: {keys} is the OR of
# `k.col IN (SELECT col FROM batch)` over the columns some sequence groups by (true when a
# sequence groups by nothing); column names come from checked rule files, never from logs.
ADD_SQL = """
INSERT INTO det_events
WITH batch AS (SELECT * FROM det_events WHERE list_contains($members, rule_id))
SELECT {columns} FROM watch_seq_events k
WHERE k.ts >= (SELECT min(ts) FROM batch) - to_seconds($lookback)
  AND k.ts <= (SELECT max(ts) FROM batch) + to_seconds($lookback)
  AND k.act_id NOT IN (SELECT act_id FROM det_events)
  AND ({keys})
"""
PRUNE_SQL = """
DELETE FROM watch_seq_events
WHERE ts > $now + INTERVAL 1 DAY
   OR ts < (SELECT max(ts) FROM watch_seq_events WHERE ts <= $now + INTERVAL 1 DAY)
           - to_seconds($lookback)
"""


class SequenceHistory:
    """What the sequence rules need from earlier batches: `hook` for run_detections."""

    def __init__(self, rules):
        seqs = [r.sequence for r in rules if r.is_sequence]
        self.members = sorted({m for s in seqs for m in s.get("rules", [])})
        self.lookback_s = max((int(s["seconds"]) for s in seqs), default=0)
        groups = [tuple(s.get("group_by") or ()) for s in seqs]
        columns = sorted({c for g in groups for c in g})
        keys = "true" if any(not g for g in groups) else " OR ".join(
            f"k.{c} IN (SELECT {c} FROM batch)" for c in columns)
        self.add_sql = ADD_SQL.format(columns=COLUMNS, keys=keys or "false")

    def hook(self, con, now: datetime) -> None:
        """Inside the detection pass: keep, add, prune (see the module docstring)."""
        if not self.members:
            return
        params = {"members": self.members, "lookback": self.lookback_s}
        con.execute(KEEP_SQL, {"members": self.members})
        con.execute(self.add_sql, params)
        con.execute(PRUNE_SQL, {"now": now, "lookback": self.lookback_s})
