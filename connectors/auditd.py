"""Linux auditd logs (raw audit.log lines, or laurel JSON lines) -> activity.

One record = one audit EVENT: every line sharing ``node`` + ``audit(ts:serial)``, wherever it
sits in the file (records of concurrent events interleave). line = its first line. A laurel
JSON line is one event. Blank and ``#`` comment lines are not records. event_id =
``host:ts:serial``; the time is the event's epoch seconds (UTC by definition, so no --tz).
Host: ``node=`` / laurel ``NODE``, else options.extra['host'], else the file name's stem, with
a warning of the file (FileResult.warnings, printed after its counts, and ingest_log.warnings):
``00.txt`` .. ``16.txt`` of one host would be 17 hosts, ``audit.log`` host ``audit``.
session_id = ``host:ses`` (the host as in target, then the kernel's login session number);
syslog's sshd logins are ``host:sshd[pid]``: both ``<target>:<id on that host>``, so a scope
groups them per host and the two never collide.
outcome: ``res=`` (success/1/yes, failed/0/no) or the SYSCALL's ``success=`` (yes/no), else
unknown.

Mapped (account / actor / session_id / action):

- EXECVE (+ its SYSCALL) -> ``exec``: account = uid (the real user the command ran as; the
  euid is kept in attrs when it differs, so a setuid binary run by alice stays alice's),
  actor = auid (the human who logged in; 4294967295 = unset -> actor NULL, actor_kind
  service), session_id = ``host:ses``. uid 0 is named root. detail = argv joined with shell
  quoting: quoted and hex-encoded args are decoded, split args (``a1_len``, ``a1[0]``..) are
  reassembled across EXECVE records. An EXECVE without its SYSCALL record has no uid:
  quarantined.
- USER_CMD (sudo) -> ``sudo.command`` / ``sudo.denied`` (res=failed); the record does not
  name the run-as user: account = options.extra['sudo_runas'] or ``root`` (attrs says so).
- USER_LOGIN -> ``session.start`` / ``login.failed`` (res=failed; syslog's sshd ``Failed ..``
  is ``login.failed`` too); USER_START -> ``pam.session_open`` (outcome failure when refused).
- ADD_USER, DEL_USER, ADD_GROUP, DEL_GROUP, USER_CHAUTHTOK, USER_MGMT, GRP_MGMT -> ``user.add``,
  ``user.delete``, ``group.add``, ``group.delete``, ``user.password_change``, ``user.modify``,
  ``group.modify`` (``add-user-to-group``: group.modify) with attrs.changed_user /
  changed_group (account = uid, the one who made the change; actor = auid). The names syslog
  uses for useradd .. chage lines. USER_MGMT/GRP_MGMT ops repeating a change (``*shadow*``,
  ``add-home-dir``) are ignored.
- CONFIG_CHANGE -> ``audit.config_change`` (account = uid, or ``root`` when the record has
  none: only root may change audit rules).

Names: the enriched names the host wrote (``AUID="alice"`` after the 0x1d separator, laurel's
upper-case keys) win; else options.extra['passwd'] (an /etc/passwd file); else the number.
Everything else (SYSCALL without EXECVE, PROCTITLE-only, USER_ACCT, CRED_*, LOGIN, AVC ...) is
ignored with event_type = its record types. Lines without an ``audit(ts:serial)`` stamp and bad
JSON are quarantined.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path

from connectors.base import TS_RANGE, Options, Staged, ts_problem
from connectors.textlog import (attrs_json, ignored_row, quarantined_row, read_lines,
                               staged_frames)
from correlate.errors import InputError

UNSET = "4294967295"
NO_STAMP = "no audit(ts:serial) stamp: not an auditd record"
MAX_DETAIL = 4000
_LINE = re.compile(r"(?:node=(\S+) )?type=(\S+) msg=audit\((\d+)(?:\.(\d+))?:(\d+)\):? ?(.*)")
_KV = re.compile(r"([A-Za-z_][\w-]*(?:\[\d+\])?)=(\"[^\"]*\"|'[^']*'|\S*)")
_ID = re.compile(r"(\d+)(?:\.(\d+))?:(\d+)")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_ARG = re.compile(r"a(\d+)(?:\[(\d+)\])?")
_ENCODED = {"acct", "cmd", "exe", "comm", "cwd", "proctitle", "data", "name"}
_ACCOUNT_OPS = {"ADD_USER": "user.add", "DEL_USER": "user.delete", "ADD_GROUP": "group.add",
                "DEL_GROUP": "group.delete", "USER_CHAUTHTOK": "user.password_change",
                "USER_MGMT": "user.modify", "GRP_MGMT": "group.modify"}
_GROUP_OPS = {"ADD_GROUP", "DEL_GROUP", "GRP_MGMT"}
# USER_MGMT / GRP_MGMT ops that write again a change another record of the run already holds
# (useradd's home directory, the /etc/gshadow copy of a group change): ignored, one change =
# one row (syslog drops its "shadow group" lines alike)
_REPEATS = re.compile(r"shadow|home-dir")
_OK, _FAILED = ("success", "1", "yes"), ("failed", "0", "no")
_SERVICE_EXES = {"/usr/sbin/crond", "/usr/sbin/cron", "/usr/sbin/atd", "/usr/lib/systemd/systemd",
                 "/lib/systemd/systemd"}


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def _value(key: str, raw: str, execve: bool):
    """A field value decoded: quotes stripped, hex-encoded strings decoded."""
    if raw[:1] in "\"'" and raw[-1:] == raw[:1] and len(raw) > 1:
        return raw[1:-1]
    if "(" not in raw:               # old format: "(hostname=?, addr=?, terminal=cron res=success)"
        raw = raw.rstrip(",)")
    if (execve and _ARG.fullmatch(key)) or key in _ENCODED:
        if _HEX.fullmatch(raw):
            return _hex(raw) if execve else _hex(raw).decode("utf-8", "replace").replace("\0", " ")
    return raw


def parse_fields(body: str, rtype: str) -> tuple[dict, dict]:
    """(raw fields, enriched names) of one record body; msg='..' contents merged in."""
    raw_part, _, enriched_part = body.partition("\x1d")
    fields: dict = {}
    execve = rtype == "EXECVE"
    for key, raw in _KV.findall(raw_part):
        if key == "msg" and raw.startswith("'"):
            for k2, r2 in _KV.findall(raw[1:-1]):
                fields.setdefault(k2, _value(k2, r2, False))
        else:
            fields[key] = _value(key, raw, execve)
    enriched = {k: v.strip('"') for k, v in _KV.findall(enriched_part)}
    return fields, enriched


def assemble_argv(execve_records: list[dict]) -> list[str]:
    """argv from the EXECVE records of one event (a0.., and a1_len/a1[0].. split args)."""
    whole: dict[int, bytes | str] = {}
    parts: dict[int, dict[int, bytes | str]] = {}
    for fields in execve_records:
        if "__argv__" in fields:                       # laurel: already a list
            return [str(a) for a in fields["__argv__"]]
        for key, value in fields.items():
            m = _ARG.fullmatch(key)
            if not m:
                continue
            if m.group(2) is None:
                whole[int(m.group(1))] = value
            else:
                parts.setdefault(int(m.group(1)), {})[int(m.group(2))] = value
    for idx, chunks in parts.items():
        pieces = [chunks[k] for k in sorted(chunks)]
        whole[idx] = b"".join(p if isinstance(p, bytes) else p.encode() for p in pieces)
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            for _, v in sorted(whole.items())]


def _load_passwd(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read passwd file for uid names: {exc.strerror}", path) from None
    names = {}
    for row in text.splitlines():
        parts = row.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            names.setdefault(parts[2], parts[0])
    return names


class _Event:
    __slots__ = ("host", "sec", "frac", "serial", "line", "lines", "records")

    def __init__(self, host, sec, frac, serial, line):
        self.host, self.sec, self.frac, self.serial, self.line = host, sec, frac, serial, line
        self.lines: list[str] = []
        self.records: list[tuple[str, dict, dict]] = []   # (type, fields, enriched)


def _laurel_event(line: int, text: str, host: str | None) -> _Event | str:
    """An _Event from one laurel JSON line, or why it is bad."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):     # RecursionError: nested too deeply
        return "invalid JSON"
    if not isinstance(doc, dict):
        return "JSON value is not an object"
    stamp = _ID.fullmatch(str(doc.get("ID", "")))
    if stamp is None:
        return "laurel record without ID ts:serial"
    event = _Event(doc.get("NODE") or host, stamp.group(1), stamp.group(2) or "0",
                   stamp.group(3), line)
    event.lines.append(text)
    for rtype, body in doc.items():
        for rec in (body if isinstance(body, list) else [body]):
            if not isinstance(rec, dict):
                continue
            fields = {k: ("" if v is None else str(v)) for k, v in rec.items()
                      if not k.isupper() and not isinstance(v, (dict, list))}
            if isinstance(rec.get("msg"), dict):
                fields.update({k: str(v) for k, v in rec["msg"].items()})
            elif isinstance(rec.get("msg"), str):
                fields.update(parse_fields(rec["msg"], rtype)[0])
            enriched = {k: str(v) for k, v in rec.items() if k.isupper() and isinstance(v, str)}
            if rtype == "EXECVE":
                fields["__argv__"] = rec.get("ARGV") or [rec.get("ARGV_STR", "")]
            event.records.append((rtype, fields, enriched))
    return event


class AuditdConnector:
    """auditd audit.log (raw or laurel JSON)."""

    name = "auditd"
    kinds = ("auto",)
    description = ("Linux auditd (raw audit.log or laurel JSON): commands, sudo, logins, "
                   "account and audit-rule changes (activity)")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        stem = path.name.split(".")[0]
        default_host = options.extra.get("host") or stem
        unnamed = False                  # an event had no node= / NODE: the default host is used
        passwd = _load_passwd(options.extra.get("passwd"))
        runas = options.extra.get("sudo_runas") or "root"
        events: dict[tuple, _Event] = {}
        rows: dict[str, list[dict]] = {"activity": [], "ignored": []}
        order: list = []                 # events and quarantined rows in file order
        for line, text in read_lines(path):
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("{"):
                event = _laurel_event(line, stripped, None)
                if isinstance(event, str):
                    order.append(quarantined_row(line, text, event))
                else:
                    unnamed = unnamed or event.host is None
                    event.host = event.host or default_host
                    key = (event.host, event.sec, event.frac, event.serial, "laurel", line)
                    events[key] = event
                    order.append(event)
                continue
            m = _LINE.search(text)
            if m is None:
                order.append(quarantined_row(line, text, NO_STAMP))
                continue
            host = m.group(1) or default_host
            unnamed = unnamed or not m.group(1)
            key = (host, m.group(3), m.group(4) or "0", m.group(5))
            event = events.get(key)
            if event is None:
                event = events[key] = _Event(host, m.group(3), m.group(4) or "0", m.group(5), line)
                order.append(event)
            fields, enriched = parse_fields(m.group(6), m.group(2))
            event.lines.append(text)
            event.records.append((m.group(2), fields, enriched))
        for item in order:
            if isinstance(item, dict):
                rows["activity"].append(item)
            else:
                table, row = self._map(item, passwd, runas)
                rows[table].append(row)
        staged = staged_frames(rows)
        if staged and unnamed and not options.extra.get("host"):
            staged[0].warnings = [f"records without node= (or laurel NODE) and no --option "
                                  f"host=NAME: the file name {stem!r} is used as their host"]
        return staged

    def _map(self, ev: _Event, passwd: dict, runas: str) -> tuple[str, dict]:
        raw = "\n".join(ev.lines)
        types = [t for t, _, _ in ev.records]
        by_type: dict[str, list] = {}
        for rtype, fields, enriched in ev.records:
            by_type.setdefault(rtype, []).append((fields, enriched))

        def name(kind: str, fields: dict, enriched: dict) -> str | None:
            value = fields.get(kind)
            if value in (None, "", UNSET, "-1", "unset"):
                return None
            # uid 0 is root on every Linux host; other numbers need enrichment or a passwd file
            return (enriched.get(kind.upper()) or passwd.get(value)
                    or ("root" if value == "0" else value))

        stamp = f"{ev.sec}.{ev.frac}:{ev.serial}"
        try:
            ts = (datetime.fromtimestamp(int(ev.sec), timezone.utc)
                  + timedelta(microseconds=int(ev.frac.ljust(6, "0")[:6])))
        except (OverflowError, OSError, ValueError):
            ts = None
        problem = ts_problem(ts, stamp) if ts else f"timestamp out of range ({TS_RANGE}): {stamp}"
        if problem:
            return "activity", quarantined_row(ev.line, raw, problem)
        base = {"line": ev.line, "raw": raw, "reason": None,
                "event_id": f"{ev.host}:{stamp}", "ts": ts, "target": ev.host}
        if "EXECVE" in by_type:
            if "SYSCALL" not in by_type:
                return "activity", quarantined_row(
                    ev.line, raw, "EXECVE without its SYSCALL record: no uid/auid to attribute it to")
            sc, sc_en = by_type["SYSCALL"][0]
            argv = assemble_argv([f for f, _ in by_type["EXECVE"]])
            detail = shlex.join(argv)
            if len(detail) > MAX_DETAIL:
                detail = detail[:MAX_DETAIL] + f"... [{len(detail) - MAX_DETAIL} more characters]"
            account = name("uid", sc, sc_en)
            euid = name("euid", sc, sc_en)
            cwd = by_type.get("CWD", [({}, {})])[0][0].get("cwd")
            return "activity", self._row(base, "exec", account, name("auid", sc, sc_en), sc,
                                         detail, {"exe": sc.get("exe"), "cwd": cwd,
                                                  "euid": euid if euid != account else None,
                                                  "success": sc.get("success"), "tty": sc.get("tty"),
                                                  "pid": sc.get("pid"), "ppid": sc.get("ppid"),
                                                  "key": sc.get("key") if sc.get("key") != "(null)" else None,
                                                  "argc": len(argv)})
        for rtype, (fields, enriched) in ((t, by_type[t][0]) for t in types):
            ok = fields.get("res") in _OK
            if rtype == "USER_CMD":
                return "activity", self._row(
                    base, "sudo.command" if ok else "sudo.denied", runas,
                    name("auid", fields, enriched) or name("uid", fields, enriched), fields,
                    fields.get("cmd"), {"cwd": fields.get("cwd"), "terminal": fields.get("terminal"),
                                        "invoking_uid": name("uid", fields, enriched),
                                        "runas_assumed": True})
            if rtype == "USER_LOGIN":
                account = fields.get("acct") or name("id", fields, enriched) or "(unknown)"
                return "activity", self._row(
                    base, "session.start" if ok else "login.failed", account,
                    name("auid", fields, enriched) or (account if ok else None), fields,
                    f"{fields.get('exe', '')} from {fields.get('addr', '?')}".strip(),
                    {"terminal": fields.get("terminal"), "hostname": fields.get("hostname"),
                     "res": fields.get("res")})
            if rtype == "USER_START":
                account = fields.get("acct") or name("uid", fields, enriched) or "(unknown)"
                return "activity", self._row(
                    base, "pam.session_open", account, name("auid", fields, enriched), fields,
                    fields.get("exe"), {"op": fields.get("op"), "terminal": fields.get("terminal"),
                                        "res": fields.get("res")})
            if rtype in _ACCOUNT_OPS and not _REPEATS.search(fields.get("op", "")):
                subject = fields.get("acct") or (f"id={fields['id']}" if fields.get("id") else "")
                member = fields.get("op", "").startswith("add-user-to-group") or "grp" in fields
                group = rtype in _GROUP_OPS or member
                return "activity", self._row(
                    base, "group.modify" if member else _ACCOUNT_OPS[rtype],
                    name("uid", fields, enriched) or "root",
                    name("auid", fields, enriched), fields,
                    f"{fields.get('op', rtype.lower())} {subject}".strip(),
                    {"exe": fields.get("exe"), "res": fields.get("res"),
                     "changed_user": None if group and not member else subject or None,
                     "changed_group": (fields.get("grp") or subject or None) if group else None})
            if rtype == "CONFIG_CHANGE":
                account = name("uid", fields, enriched)
                return "activity", self._row(
                    base, "audit.config_change", account or "root", name("auid", fields, enriched),
                    fields, " ".join(f"{k}={fields[k]}" for k in ("op", "key", "list", "res")
                                     if k in fields),
                    {"account_assumed": None if account else True})
        label = "+".join(dict.fromkeys(types))
        if "SYSCALL" in by_type:
            sc, sc_en = by_type["SYSCALL"][0]
            label += f"({sc_en.get('SYSCALL') or sc.get('syscall', '?')})"
        return "ignored", ignored_row(ev.line, raw, label)

    @staticmethod
    def _row(base: dict, action: str, account: str | None, actor: str | None, fields: dict,
             detail: str | None, attrs: dict) -> dict:
        if not account:
            return quarantined_row(base["line"], base["raw"],
                                   f"missing required field: uid (account) for {action}")
        ses = fields.get("ses")
        exe = fields.get("exe") or attrs.get("exe")
        login = action in ("session.start", "login.failed")
        service = exe in _SERVICE_EXES or (actor is None and not login)
        said = fields.get("res") or fields.get("success")
        outcome = "success" if said in _OK else "failure" if said in _FAILED else "unknown"
        return dict(base, account=account, action=action, detail=detail or None, actor=actor,
                    session_id=f"{base['target']}:{ses}" if ses not in (None, "", UNSET) else None,
                    actor_kind="service" if service else "human", attrs=attrs_json(attrs),
                    outcome=outcome)
