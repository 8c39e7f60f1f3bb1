"""Ticket references and the result type shared by the ticket fetchers.

Both fetchers (``connectors.jira_fetch`` and ``connectors.servicenow_fetch``)
return a :class:`TicketFetch` and raise :class:`TicketFetchError` only for
run-level problems (credentials rejected, server flavour unknown).  Everything
about a single ticket (not found, forbidden, timed out, malformed) is recorded
in the result instead.

Ticket references are checked against strict patterns *before* anything is
sent to a server, so a reference can never be used to inject JQL or a
ServiceNow encoded query:

* Jira issue key: ``^[A-Z][A-Z0-9_]{1,9}-[1-9][0-9]{0,8}$``
* ServiceNow change: ``^CHG[0-9]{7,10}$`` or a 32-character lower-case hex
  ``sys_id``.

Matching is done with :func:`re.fullmatch` on ASCII classes, so a trailing
newline, surrounding blanks, lower-case keys or non-ASCII digits are invalid;
references are never rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable

JIRA_KEY_RE = re.compile(r"[A-Z][A-Z0-9_]{1,9}-[1-9][0-9]{0,8}")
SNOW_NUMBER_RE = re.compile(r"CHG[0-9]{7,10}")
SNOW_SYS_ID_RE = re.compile(r"[0-9a-f]{32}")

#: The ticket statuses pamcorr understands (``unknown:<name>`` may also occur
#: for Jira statuses that could not be mapped, see docs/tickets.md).
OUR_STATUSES = (
    "requested", "approved", "in_progress", "resolved", "closed", "cancelled", "rejected",
)


class TicketFetchError(Exception):
    """A whole fetch cannot proceed (for example the credentials were rejected).

    The message never contains a token or password.
    """


@dataclass
class TicketFetch:
    """Everything one fetch produced; see docs/tickets.md for the field meanings."""

    tickets: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    approvals: list[dict] = field(default_factory=list)
    raw: list[tuple[str, bytes]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    missing_why: dict[str, str] = field(default_factory=dict)   # ref -> detail ("not found")
    failed: dict[str, str] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)


def is_jira_key(ref: object) -> bool:
    """True when ``ref`` is a string that is a strict Jira issue key."""
    return isinstance(ref, str) and JIRA_KEY_RE.fullmatch(ref) is not None


def is_servicenow_ref(ref: object) -> bool:
    """True when ``ref`` is a CHG number or a 32-hex lower-case sys_id."""
    return isinstance(ref, str) and (
        SNOW_NUMBER_RE.fullmatch(ref) is not None or SNOW_SYS_ID_RE.fullmatch(ref) is not None
    )


def split_refs(refs: Iterable[object], system: str) -> tuple[list[str], list[str]]:
    """Split ``refs`` into ``(valid, invalid)`` for ``system`` ('jira' or 'servicenow').

    Order is kept and duplicates are dropped (in both lists).  Invalid entries
    are returned as their ``repr`` when they are not strings, so they can be
    reported but never sent anywhere.
    """
    if system == "jira":
        check = is_jira_key
    elif system == "servicenow":
        check = is_servicenow_ref
    else:
        raise ValueError(f"unknown ticket system {system!r}")
    valid: list[str] = []
    invalid: list[str] = []
    for ref in refs:
        if check(ref):
            if ref not in valid:
                valid.append(ref)  # type: ignore[arg-type]
        else:
            shown = ref if isinstance(ref, str) else repr(ref)
            if shown not in invalid:
                invalid.append(shown)
    return valid, invalid


def split_jira_keys(refs: Iterable[object]) -> tuple[list[str], list[str]]:
    """``split_refs(refs, 'jira')``."""
    return split_refs(refs, "jira")


def split_servicenow_refs(refs: Iterable[object]) -> tuple[list[str], list[str]]:
    """``split_refs(refs, 'servicenow')``."""
    return split_refs(refs, "servicenow")


# --- time parsing shared by both fetchers ---------------------------------

_SNOW_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_servicenow_utc(value: object) -> datetime | None:
    """Parse a Table API time (``YYYY-MM-DD HH:MM:SS``, UTC with display_value=false).

    Empty values give ``None``; anything in another format also gives ``None``
    (the caller logs it) rather than guessing a day/month order.
    """
    if not isinstance(value, str) or not _SNOW_TS_RE.fullmatch(value):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def parse_jira_time(value: object, *, end_of_day: bool = False) -> datetime | None:
    """Parse a Jira timestamp (``2011-12-14T10:26:06.000+1300``) to aware UTC.

    Date-only values (Jira "date picker" custom fields) are taken as whole UTC
    days: the start of the day, or the start of the next day when
    ``end_of_day`` is set (used for the end of a planned window).
    Naive or unparseable values give ``None``.
    """
    if not isinstance(value, str) or not value:
        return None
    if _DATE_RE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        start = datetime.combine(day, time(0, 0), tzinfo=timezone.utc)
        return start + timedelta(days=1) if end_of_day else start
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value, fmt).astimezone(timezone.utc)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo is not None else None
