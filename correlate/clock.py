"""The one place pamcorr reads the time."""

from datetime import datetime, timezone


def now_utc() -> datetime:
    """Current time, timezone-aware UTC. Tests freeze it with freezegun."""
    return datetime.now(timezone.utc)
