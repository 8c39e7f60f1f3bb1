"""`pamcorr ingest --reingest`: replace exactly one file's rows, and say when a skipped file was
first ingested with other options (--tz, --year, --option). correlate/ingest.py calls these inside
the transaction that loads the file again."""

from __future__ import annotations

import json

from connectors.base import Options

# The file's earlier ingests: the same name (a grown file has one per tail it read) or the same
# content under another name.
PRIOR_SQL = ("SELECT ingest_id FROM ingest_log WHERE source = ? AND kind = ? "
             "AND (file = ? OR sha256 = ?) ORDER BY ingest_id")

FIRST_OPTIONS_SQL = ("SELECT options FROM ingest_log WHERE source = ? AND kind = ? AND sha256 = ? "
                     "AND finished IS NOT NULL ORDER BY ingest_id LIMIT 1")

# Every table whose rows carry the ingest that brought them. Rows a later file superseded
# (an approval or ticket it re-sent) carry that file's ingest id and stay.
TABLES = ("activity", "approvals", "approvals_pending", "tickets", "ticket_history",
          "approval_events", "identities", "targets", "approvers", "quarantine", "ignored_counts")

# What the summary line names, in this order (table, singular label).
SHOWN = (("activity", "activity rows"), ("approvals", "approvals"), ("tickets", "tickets"),
         ("ticket_history", "ticket history rows"), ("approval_events", "approval events"),
         ("identities", "identities"), ("targets", "targets"), ("approvers", "approvers"),
         ("quarantine", "quarantined rows"))


def options_json(options: Options) -> str:
    """The options an ingest ran with, as stored in ingest_log.options (schema 023)."""
    return json.dumps({"tz": options.tz, "year": options.year,
                       "extra": {k: str(v) for k, v in sorted((options.extra or {}).items())}},
                      sort_keys=True)


def _flags(stored: dict) -> list[str]:
    out = [f"--tz {stored['tz']}" if stored.get("tz") else "no --tz",
           f"--year {stored['year']}" if stored.get("year") else "no --year"]
    out += [f"--option {k}={v}" for k, v in sorted((stored.get("extra") or {}).items())]
    return out


def options_note(con, source: str, kind: str, sha256: str, options: Options) -> str | None:
    """For a file skipped as already ingested: a note when its first ingest ran with other
    options, naming --reingest; None when they are the same or were not recorded."""
    row = con.execute(FIRST_OPTIONS_SQL, [source, kind, sha256]).fetchone()
    if not row or row[0] is None:
        return None
    first, now = json.loads(row[0]), json.loads(options_json(options))
    if first == now:
        return None
    then_flags, now_flags = _flags(first), _flags(now)
    was = [f for f in then_flags if f not in now_flags]
    new = [f for f in now_flags if f not in then_flags]
    return (f"its first ingest ran with other options ({', '.join(was) or 'none'}; now "
            f"{', '.join(new) or 'none'}): add --reingest to replace its rows")


def prior_ingests(con, source: str, kind: str, file: str, sha256: str) -> list[int]:
    return [i for (i,) in con.execute(PRIOR_SQL, [source, kind, file, sha256]).fetchall()]


def _in(ids: list[int]) -> str:
    return ", ".join(str(int(i)) for i in ids) or "NULL"


def row_counts(con, ids: list[int]) -> dict[str, int]:
    """Rows each table holds from these ingests."""
    return {t: con.execute(f"SELECT count(*) FROM {t} WHERE ingest_id IN ({_in(ids)})")
            .fetchone()[0] for t, _ in SHOWN}


def remove(con, ids: list[int]) -> None:
    """Delete every row these ingests brought, and their ingest_log rows (in the caller's
    transaction)."""
    for table in (*TABLES, "ingest_log"):
        con.execute(f"DELETE FROM {table} WHERE ingest_id IN ({_in(ids)})")


def describe(before: dict[str, int], after: dict[str, int]) -> str:
    """`-N +M activity rows, ...`: every table that had or has rows of the file."""
    parts = [f"-{before[t]} +{after[t]} {label}" for t, label in SHOWN
             if before.get(t) or after.get(t)]
    return ", ".join(parts) or "-0 +0 rows"
