"""auditd sequence, Teleport session and silent-source checks (issue 20, sections 2 and 3)."""

from __future__ import annotations

from datetime import datetime

from correlate.store import Store


def findings(store: Store, start: datetime | None, end: datetime | None) -> list[dict]:
    """Host-side integrity findings for the period (none yet: see docs/integrity.md)."""
    return []
