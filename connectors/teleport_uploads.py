"""Teleport recording marks for the integrity checks: `session.upload` events, and session ends
recorded with `session_recording: off` (no recording to upload).

Parsing only (correlate/integrity loads and checks `recording_not_uploaded`). The teleport
connector counts `session.upload` as ignored; this keeps which session it uploaded. Only lines
naming `session.upload` or `session_recording` are parsed; a line that is not JSON is left to
the connector, which quarantines it.
"""

from __future__ import annotations

import json
from pathlib import Path

from connectors.textlog import read_lines

_NEEDLES = ('"session.upload"', '"session_recording"')


def scan(path: Path) -> list[dict]:
    """Marks of one Teleport audit log: {sid, mark (upload | recording_off), cluster ('' when
    the event names none), ts (the event's `time` as written), file, line}."""
    marks = []
    for line, text in read_lines(Path(path)):
        if not any(needle in text for needle in _NEEDLES):
            continue
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if not isinstance(doc, dict) or not str(doc.get("sid") or "").strip():
            continue
        event = doc.get("event")
        if event == "session.upload":
            mark = "upload"
        elif event == "session.end" and str(doc.get("session_recording")).lower() == "off":
            mark = "recording_off"
        else:
            continue
        marks.append({"sid": str(doc["sid"]).strip(), "mark": mark,
                      "cluster": str(doc.get("cluster_name") or ""),
                      "ts": str(doc.get("time") or ""), "file": str(path), "line": line})
    return marks
