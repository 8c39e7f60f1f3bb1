"""auditd serials for the integrity checks: per record its host, time, serial and type.

Parsing only (correlate/integrity loads and checks). Raw audit.log lines and laurel JSON lines;
kernel `audit_lost=N` / `backlog limit exceeded` lines are kept as lost-record evidence.
Host: `node=` / laurel `NODE`, else the --option host, else the file name's stem (as the
auditd connector names it).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from connectors.textlog import read_lines

_LINE = re.compile(r"(?:node=(\S+) )?type=(\S+) msg=audit\((\d+(?:\.\d+)?):(\d+)\)")
_LAUREL_ID = re.compile(r'"ID"\s*:\s*"(\d+(?:\.\d+)?):(\d+)"')
_LAUREL_NODE = re.compile(r'"NODE"\s*:\s*"([^"]+)"')
_LOST = re.compile(r"audit_lost=([1-9]\d*)|backlog limit exceeded")
# what makes a CONFIG_CHANGE worth a warning: rules removed, auditing off, failure mode or
# backlog changed
_CONFIG = re.compile(r'op="?remove_rule|audit_enabled=0\b|audit_failure=|backlog_limit=')
MAX_INFO = 500


def _when(stamp: str) -> datetime:
    return datetime.fromtimestamp(float(stamp), tz=timezone.utc)


def scan(path: Path, default_host: str | None = None) -> tuple[list[dict], list[dict]]:
    """(records, lost lines) of one audit log: records are {host, ts, serial, rtype, file,
    line, info}; info is the text of DAEMON_* and audit-config records (else None)."""
    host0 = default_host or Path(path).name.split(".")[0]
    records, lost = [], []
    for line, text in read_lines(Path(path)):
        m = _LINE.search(text)
        if m is not None:
            host, rtype = m.group(1) or host0, m.group(2)
            info = None
            if rtype.startswith("DAEMON_") or (rtype == "CONFIG_CHANGE" and _CONFIG.search(text)):
                info = text[:MAX_INFO]
            records.append({"host": host, "ts": _when(m.group(3)), "serial": int(m.group(4)),
                            "rtype": rtype, "file": str(path), "line": line, "info": info})
        elif text.lstrip().startswith("{"):
            i = _LAUREL_ID.search(text)
            if i is not None:
                node = _LAUREL_NODE.search(text)
                records.append({"host": node.group(1) if node else host0,
                                "ts": _when(i.group(1)), "serial": int(i.group(2)),
                                "rtype": "laurel", "file": str(path), "line": line,
                                "info": None})
        if _LOST.search(text):
            node = re.search(r"\bnode=(\S+)", text)
            lost.append({"host": node.group(1) if node else host0, "file": str(path),
                         "line": line, "info": text[:MAX_INFO]})
    return records, lost

