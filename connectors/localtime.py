"""Zone-less local times read with --tz, checked against daylight-saving changes.

A wall-clock time in the hour a clock goes back occurs twice (ambiguous); one in the hour it
goes forward never existed. Python would silently read the first as its earlier occurrence
and the second with the offset before the change, so such a time is quarantined with the
reason, unless the source's option `dst` says which reading to take: `earlier` (the earlier
occurrence; for a missing time, the offset before the change) or `later`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from connectors.base import Options, ts_problem
from connectors.textlog import local_to_utc as _local_to_utc, parse_iso as _parse_iso
from correlate.errors import InputError

DST_CHOICES = ("earlier", "later")


def dst_choice(options: Options) -> str | None:
    """The `dst` option (None: quarantine ambiguous and missing local times)."""
    choice = options.extra.get("dst")
    if choice in (None, ""):
        return None
    if choice not in DST_CHOICES:
        raise InputError(f"dst must be 'earlier' or 'later', not {choice!r}")
    return choice


def _fold(naive: datetime, tz: ZoneInfo, choice: str | None) -> tuple[int | None, str | None]:
    """(fold to read `naive` with, None) or (None, why it cannot be read) in `tz`."""
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return 0, None
    if choice:
        return (0 if choice == "earlier" else 1), None
    back = first.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None)
    if back == naive:
        return None, (f"ambiguous local time {naive.isoformat()} in {tz} (it occurs twice when "
                      f"the clocks go back; set --option dst=earlier or dst=later)")
    return None, (f"non-existent local time {naive.isoformat()} in {tz} (skipped when the "
                  f"clocks go forward; set --option dst=earlier or dst=later)")


def local_to_utc(naive: datetime, tz: ZoneInfo | None,
                 choice: str | None = None) -> tuple[datetime | None, str | None]:
    """connectors.textlog.local_to_utc, quarantining ambiguous and missing local times."""
    if tz is None:
        return _local_to_utc(naive, tz)
    fold, problem = _fold(naive, tz, choice)
    if problem:
        return None, problem
    return _local_to_utc(naive.replace(fold=fold), tz)


def parse_iso(text: str, tz: ZoneInfo | None,
              choice: str | None = None) -> tuple[datetime | None, str | None]:
    """connectors.textlog.parse_iso, quarantining ambiguous and missing zone-less times."""
    value, problem = _parse_iso(text, tz)
    if problem or tz is None:
        return value, problem
    try:
        naive = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text.strip()))
    except ValueError:
        return value, problem
    if naive.tzinfo is not None:
        return value, problem
    fold, problem = _fold(naive, tz, choice)
    if problem:
        return None, problem
    if not fold:
        return value, None
    value = naive.replace(tzinfo=tz, fold=fold).astimezone(timezone.utc)
    problem = ts_problem(value, text)
    return (None, problem) if problem else (value, None)
