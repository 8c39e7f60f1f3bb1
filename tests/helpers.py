"""Small helpers the connector tests share: ingest one file through the real store."""

from __future__ import annotations

from connectors.base import Options
from correlate.ingest import ingest
from correlate.store import Store


def ingest_one(connector, path, store=None, **opts):
    """(store, result) after ingesting `path`; the file's counts must add up."""
    store = store or Store(":memory:")
    (result,) = ingest(store, connector, None, [str(path)], Options(**opts))
    assert result.balanced, result
    return store, result


def reduced_rows(rows, keep):
    """Rows reduced to the kept columns, in a stable order (lines are not compared)."""
    return sorted(str([r[i] for i in keep]) for r in rows)


def activity_by_event(store):
    """Every stored activity row as a dict, by event_id."""
    return {a["event_id"]: a for a in store.query_dicts("SELECT * FROM activity")}
