"""The approval-event contract: vendor events a connector folds into approvals, kept across files.

An approval that several vendor events make (a Teleport request created in one daily log and
approved in the next, a CyberArk checkout whose PSM session is in the next file, a PIM activation
deactivated a day later) cannot be folded by a connector that sees one file. Such a connector:

* stages each event as a row of the store table ``approval_events`` (`EVENT_COLUMNS` plus
  ``line, raw, reason``): ``fold_key`` (events folded together: a Teleport request id, a CyberArk
  issuer+account+target, a PIM principal+role+scope), ``approval_id``, ``event_key`` (the
  event's natural key; a repeat is a duplicate), ``event`` (its type), ``ts`` and ``fields`` (a
  JSON object of the vendor fields the fold reads, options such as a ticket pattern applied);
* declares ``approval_fold``, a `Fold`: SQL the store runs after each file over every stored
  event of the fold keys the file touched (relation ``fold_events``: the table's columns), giving
  one row per approval (`FOLD_COLUMNS`). A row with ``problem`` set, or a status that is not
  approved, denied or revoked, is kept in ``approvals_pending`` with that reason, not in
  ``approvals``.

A fold that also needs the source's activity (CyberArk: PSM sessions end a checkout and cite it)
names ``activity_key``, an SQL expression over ``activity`` columns giving a row's fold key; the
store then passes those rows as ``fold_activity`` (act_id, ts, account, target, action,
session_id, actor, attrs, approval_ref, fold_key), refolds the keys of the file's new activity,
and with ``links`` (SQL giving ``act_id, approval_ref``) keeps ``activity.approval_ref`` in step.

The connector still never opens the database: it hands over rows and SQL text; the store runs it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from connectors.base import Staged, quarantine_not_utf8

TABLE = "approval_events"
EVENT_COLUMNS = ("fold_key", "approval_id", "event_key", "event", "ts", "fields")
FOLD_COLUMNS = ("approval_id", "fold_key", "account", "target", "start_ts", "end_ts", "ticket",
                "requester", "approver", "kind", "status", "revoked_at", "approval_reason",
                "targets", "problem")
_TYPES = {"line": "BIGINT", "ts": "TIMESTAMPTZ"}


@dataclass(frozen=True)
class Fold:
    """How a connector's events become approvals (module docstring)."""

    approvals: str
    activity_key: str | None = None
    links: str | None = None


def fields_json(values: dict) -> str:
    """The JSON object stored in `fields`: datetimes as ISO 8601 UTC, keys sorted."""
    def conv(v):
        return v.isoformat() if isinstance(v, datetime) else v
    return json.dumps({k: conv(v) for k, v in values.items()}, sort_keys=True, default=str)


def event_key(prefix: str, *parts) -> str:
    """A stable key from an event's content, for events that carry no unique id."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return f"{prefix}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def event_row(line: int, raw: str, fold_key: str, approval_id: str, key: str, event: str,
              ts: datetime, fields: dict) -> dict:
    return {"line": line, "raw": raw, "reason": None, "fold_key": fold_key,
            "approval_id": approval_id, "event_key": key, "event": event, "ts": ts,
            "fields": fields_json(fields)}


def events_batch(rows: list[dict], fold_key_sql: str | None = None) -> Staged:
    """The `approval_events` batch of a Python connector; staged even when empty, so the store
    refolds what the file's activity touched. `fold_key_sql` computes fold_key in SQL (from
    `fields`), for keys that must equal an `activity_key` expression byte for byte."""
    cols = ("line", "raw", "reason") + EVENT_COLUMNS
    select = ", ".join(
        f'CASE WHEN reason IS NULL THEN {fold_key_sql} END AS "{c}"'
        if c == "fold_key" and fold_key_sql else
        f'CAST("{c}" AS {_TYPES.get(c, "VARCHAR")}) AS "{c}"' for c in cols)
    if not rows:
        return Staged(TABLE, sql=f"SELECT {select} FROM (SELECT "
                      + ", ".join(f'NULL::{_TYPES.get(c, "VARCHAR")} AS "{c}"' for c in cols)
                      + ") src WHERE false")
    frame = pd.DataFrame(rows, columns=list(cols))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    quarantine_not_utf8(frame)
    return Staged(TABLE, sql=f"SELECT {select} FROM src", frame=frame)


def iso_sql(expr: str) -> str:
    """A TIMESTAMPTZ as ISO 8601 UTC text with microseconds (how `fields` holds times)."""
    return f"strftime(timezone('UTC', {expr}), '%Y-%m-%dT%H:%M:%S.%fZ')"


def field_ts(name: str) -> str:
    """SQL reading a time from `fields` (as written by fields_json or iso_sql)."""
    return f"CAST(fields->>'{name}' AS TIMESTAMPTZ)"
