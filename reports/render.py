"""One Jinja environment (autoescape on), filters, and atomic file writes."""

from __future__ import annotations

import functools
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from correlate.errors import OutputError
from reports.visible import INVISIBLE, reveal


def _ts(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + "Z"
    return str(value)


def _gap(value) -> str:
    if value is None:
        return ""
    sign = "+" if value > 0 else "-"
    s = abs(int(value))
    if s >= 86400:
        return f"{sign}{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{sign}{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{sign}{s // 60}m {s % 60}s"
    return f"{sign}{s}s"


def _visible(value):
    """Finalize hook: every template value shows bidi and invisible characters as `<U+XXXX>`."""
    if isinstance(value, Markup):   # already HTML (a user template's |safe): escape the marker
        return Markup(INVISIBLE.sub(lambda m: escape(reveal(m.group())), value))
    if isinstance(value, str):
        return reveal(value)        # autoescape then turns the marker into &lt;U+XXXX&gt;
    return value


def environment(user_templates: str | os.PathLike | None = None) -> Environment:
    """Autoescaping environment that shows invisible characters; a user template folder is
    checked before the built-ins."""
    loaders = [PackageLoader("reports", "templates")]
    if user_templates:
        loaders.insert(0, FileSystemLoader(str(user_templates)))
    env = Environment(loader=ChoiceLoader(loaders), autoescape=True, finalize=_visible,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["ts"] = _ts
    env.filters["gap"] = _gap
    env.filters["num"] = lambda n: f"{n:,}" if isinstance(n, int) else n
    env.filters["short"] = short
    return env


@functools.lru_cache(maxsize=8)
def _cached_environment(user_templates: str | None) -> Environment:
    # one environment per template folder: a bundle renders dozens of scope pages, and a new
    # environment compiles every template again
    return environment(user_templates)


def render(template: str, context: dict, user_templates=None) -> str:
    folder = str(user_templates) if user_templates else None
    return _cached_environment(folder).get_template(template).render(**context)


def write_atomic(path: Path, text: str) -> Path:
    """Write to a temp file beside `path`, then rename: no half-written reports. The file gets
    the mode of the rest of the bundle (0666 less the umask, 0644 as a rule), not mkstemp's 0600.
    OutputError naming `path` when it cannot be written."""
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):    # full disk, quota, ulimit -f, read-only folder
            raise OutputError(path, exc) from None
        raise
    return path


SHORT = 400


def short(text, limit: int = SHORT):
    """Long text (a whole CloudTrail policy document) cut for display only, saying how much is
    left out: the store, the CSV/JSON outputs and the bundle keep it whole."""
    if not isinstance(text, str) or len(text) <= limit:
        return text
    return f"{text[:limit]} … ({len(text) - limit:,} more characters)"
