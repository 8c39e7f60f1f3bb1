"""Store approvers.csv rows (`pamcorr ingest generic --kind approvers`): who may approve which
targets and kinds, read by the approver_not_authorized hygiene check (docs/hygiene.md)."""

from __future__ import annotations

# The staged rows (view `stage`: approver, scope, kinds, line, reason) not stored yet; the last
# line of a repeated (approver, scope) wins. Rows identical to stored ones are duplicates.
_FRESH = """
CREATE OR REPLACE TEMP TABLE fresh AS
SELECT line, lower(approver) AS approver_norm, lower(scope) AS scope_norm, kinds
FROM stage WHERE reason IS NULL
QUALIFY row_number() OVER (PARTITION BY lower(approver), lower(scope) ORDER BY line DESC) = 1
"""
_KNOWN = """
DELETE FROM fresh f WHERE EXISTS (
    SELECT 1 FROM approvers t WHERE t.approver_norm = f.approver_norm
      AND t.scope_norm = f.scope_norm AND t.kinds IS NOT DISTINCT FROM f.kinds)
"""
_INSERT = """
INSERT OR REPLACE INTO approvers (approver_norm, scope_norm, kinds, source, ingest_id, line)
SELECT approver_norm, scope_norm, kinds, ?, ?, line FROM fresh
"""


def load_approvers(con, source: str, ingest_id: int) -> int:
    """The store's loader for kind approvers (correlate.ingest LOADERS); returns rows accepted."""
    con.execute(_FRESH)
    con.execute(_KNOWN)
    con.execute(_INSERT, [source, ingest_id])
    return con.execute("SELECT count(*) FROM fresh").fetchone()[0]
