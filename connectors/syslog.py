"""sshd, sudo and su lines from auth.log / secure (RFC 3164, ISO or RFC 5424 syslog) -> activity.

Mapped (one activity row per line; `target` is the syslog host, or options.extra['host']):

- ``sudo: alice : TTY=.. ; PWD=.. ; USER=root ; COMMAND=..`` -> ``sudo.command`` (account = the
  run-as USER, actor = the invoking user, detail = the command). The same line with a refusal
  (``user NOT in sudoers``, ``command not allowed``, ``3 incorrect password attempts``) ->
  ``sudo.denied``.
- sshd ``Accepted <method> for X from IP port N`` -> ``session.start`` (session_id
  ``host:sshd[pid]``); ``pam_unix(sshd:session): session closed for user X`` -> ``session.end``
  with the same session_id; ``Failed <method> for [invalid user] X from IP`` ->
  ``ssh.login_failed`` (``message repeated N times: [ Failed ..]`` too, with attrs.repeated).
- ``pam_unix(su:session): session opened for user root by alice(uid=..)`` -> ``su``.

Every other well-formed line goes to the ``ignored`` batch (event_type = the program name).
A line with no recognisable syslog header is quarantined.

Year-less RFC 3164 timestamps: the first line is in ``options.year`` when given; otherwise the
LAST line is in the year of the file's modification time (the previous year when its month is
later than the mtime's month). A month that falls by six or more between consecutive lines is a
Dec -> Jan rollover. attrs.year_inferred says which rule was used. RFC 3164 carries no zone:
without ``--tz`` mapped lines are quarantined saying so.

Shared helpers (read_lines, staged_frames, assign_years, ...) live in connectors/textlog.py.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path

from connectors.base import Options, Staged

from connectors.textlog import (BSD_TS, MONTHS, assign_years, attrs_json, ignored_row,  # noqa: F401
                               local_to_utc, parse_iso, quarantined_row, read_lines,
                               staged_frames, zone_of)

# ---------------------------------------------------------------- syslog lines

_RFC5424 = re.compile(r"<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+)"
                      r"(?: \ufeff?(.*))?")
_ISO_HEAD = re.compile(r"(?:<\d{1,3}>)?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
                       r"(?:Z|[+-]\d{2}:?\d{2})?) (\S+) (.*)")
_BSD_HEAD = re.compile(r"(?:<\d{1,3}>)?" + BSD_TS + r" (\S+) (.*)")
_TAG = re.compile(r"([^\s\[\]:]+)(?:\[(\d+)\])?: ?(.*)")

_ACCEPTED = re.compile(r"Accepted (\S+) for (.*?) from (\S+) port (\d+)(?: (\S+))?(?:: (.*))?$")
_FAILED = re.compile(r"Failed (\S+) for (invalid user )?(.*?) from (\S+) port (\d+)")
_REPEATED = re.compile(r"message repeated (\d+) times: \[ ?(.*?)\]?$")
_SSH_CLOSED = re.compile(r"pam_unix\(sshd:session\): session closed for user (\S+)")
_SU_OPENED = re.compile(r"pam_unix\(su(?:-l)?:session\): session opened for user (\S+?)"
                        r"(?:\(uid=\d+\))? by (\S*?)(?:\(uid=(\d+)\))?$")
_SUDO_KEY = re.compile(r"([A-Z]+)=(.*)")
_SSHD = ("sshd", "sshd-session", "sshd-auth")


def _sudo(msg: str) -> dict | None:
    user, sep, rest = msg.partition(" : ")
    pos = rest.find("COMMAND=")
    if not sep or pos < 0:
        return None
    keys, notes = {}, []
    for part in rest[:pos].split(" ; "):
        m = _SUDO_KEY.fullmatch(part.strip())
        if m:
            keys[m.group(1)] = m.group(2)
        elif part.strip():
            notes.append(part.strip())
    return {"action": "sudo.denied" if notes else "sudo.command",
            "account": keys.get("USER", "root"), "actor": user.strip(),
            "detail": rest[pos + len("COMMAND="):],
            "attrs": {"tty": keys.get("TTY"), "pwd": keys.get("PWD"), "group": keys.get("GROUP"),
                      "runas_defaulted": None if "USER" in keys else True,
                      "denied": "; ".join(notes) or None}}


def _sshd(msg: str) -> dict | None:
    repeated = None
    m = _REPEATED.match(msg)
    if m:
        repeated, msg = int(m.group(1)), m.group(2)
    m = _ACCEPTED.match(msg)
    if m:
        return {"action": "session.start", "account": m.group(2), "actor": m.group(2),
                "detail": f"{m.group(1)} from {m.group(3)} port {m.group(4)}", "session": True,
                "attrs": {"method": m.group(1), "src_ip": m.group(3), "src_port": m.group(4),
                          "key": m.group(6)}}
    m = _FAILED.match(msg)
    if m:
        return {"action": "ssh.login_failed", "account": m.group(3) or "(empty)",
                "actor": m.group(3) or None,
                "detail": f"{m.group(1)} from {m.group(4)} port {m.group(5)}", "session": True,
                "attrs": {"method": m.group(1), "src_ip": m.group(4), "src_port": m.group(5),
                          "invalid_user": True if m.group(2) else None, "repeated": repeated}}
    m = _SSH_CLOSED.match(msg)
    if m:
        return {"action": "session.end", "account": m.group(1), "actor": m.group(1),
                "detail": None, "session": True, "attrs": {}}
    return None


def _su(msg: str) -> dict | None:
    m = _SU_OPENED.match(msg)
    if not m:
        return None
    return {"action": "su", "account": m.group(1), "actor": m.group(2) or None, "detail": None,
            "actor_kind": None if m.group(2) else "service", "attrs": {"by_uid": m.group(3)}}


def classify(prog: str, msg: str) -> dict | None:
    """The activity a message describes, or None when pamcorr has no use for it."""
    if prog == "sudo":
        return _sudo(msg)
    if prog in _SSHD:
        return _sshd(msg)
    if prog in ("su", "su-l"):
        return _su(msg)
    return None


def _header(text: str) -> tuple | None:
    """(ts kind, ts parts, host, message) from a syslog line, or None."""
    m = _RFC5424.match(text)
    if m:
        tag = f"{m.group(3)}[{m.group(4)}]: " if m.group(4) != "-" else f"{m.group(3)}: "
        return "iso", m.group(1), m.group(2), tag + (m.group(5) or "")
    m = _ISO_HEAD.match(text)
    if m:
        return "iso", m.group(1).replace(",", "."), m.group(2), m.group(3)
    m = _BSD_HEAD.match(text)
    if m and m.group(1) in MONTHS:
        return "bsd", m.groups()[:6], m.group(7), m.group(8)
    return None


class SyslogConnector:
    """sshd / sudo / su lines of auth.log or secure."""

    name = "syslog"
    kinds = ("auto",)
    description = "Linux auth.log / secure: sudo commands, sshd logins and failures, su (activity)"

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        tz = zone_of(options)
        host_override = options.extra.get("host")
        parsed, months = [], []
        for line, text in read_lines(path):
            if not text.strip():
                continue
            head = _header(text)
            parsed.append((line, text, head))
            months.append(MONTHS[head[1][0]] if head and head[0] == "bsd" else None)
        years, rule = assign_years(months, path, options)
        rows: dict[str, list[dict]] = {"activity": [], "ignored": []}
        seen: dict[str, int] = {}
        for (line, text, head), year in zip(parsed, years):
            if head is None:
                rows["activity"].append(quarantined_row(
                    line, text, "unrecognised line: no RFC 3164, ISO or RFC 5424 syslog header"))
                continue
            ts_kind, ts_parts, host, message = head
            tag = _TAG.match(message)
            prog, pid, msg = (tag.group(1), tag.group(2), tag.group(3)) if tag else ("", None, message)
            found = classify(prog, msg)
            if found is None:
                rows["ignored"].append(ignored_row(line, text, prog or "syslog"))
                continue
            ts, problem = self._timestamp(ts_kind, ts_parts, year, tz)
            if problem:
                rows["activity"].append(quarantined_row(line, text, problem))
                continue
            target = host_override or host
            key = hashlib.sha256("\x1f".join(
                (target, ts.isoformat(), prog, pid or "", msg)).encode()).hexdigest()[:20]
            seen[key] = seen.get(key, 0) + 1
            attrs = dict(found["attrs"], pid=pid)
            if ts_kind == "bsd":
                attrs["year_inferred"] = rule
            rows["activity"].append({
                "line": line, "raw": text, "reason": None,
                "event_id": f"{target}:{key}" + (f"#{seen[key]}" if seen[key] > 1 else ""),
                "ts": ts, "account": found["account"], "target": target,
                "action": found["action"], "detail": found["detail"],
                "session_id": f"{target}:{prog}[{pid}]" if found.get("session") and pid else None,
                "actor": found["actor"], "actor_kind": found.get("actor_kind"),
                "attrs": attrs_json(attrs)})
        return staged_frames(rows)

    @staticmethod
    def _timestamp(ts_kind, parts, year, tz) -> tuple[datetime | None, str | None]:
        if ts_kind == "iso":
            return parse_iso(parts, tz)
        mon, day, hh, mm, ss, frac = parts
        try:
            naive = datetime(year, MONTHS[mon], int(day), int(hh), int(mm), int(ss),
                             int((frac or "0").ljust(6, "0")))
        except ValueError:
            return None, f"invalid date {mon} {day} {hh}:{mm}:{ss} in inferred year {year}"
        if tz is None:
            return None, ("timestamp without time zone (RFC 3164 syslog carries none): "
                          "set the source zone with --tz")
        return local_to_utc(naive, tz)
