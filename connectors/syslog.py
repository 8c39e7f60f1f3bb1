"""sshd, sudo and su lines from auth.log / secure (RFC 3164, ISO or RFC 5424 syslog) -> activity.

Mapped (one activity row per line; `target` is the syslog host, or options.extra['host']);
``outcome`` is success | failure as the line says:

- ``sudo: alice : TTY=.. ; PWD=.. ; USER=root ; COMMAND=..`` -> ``sudo.command`` (account = the
  run-as USER, actor = the invoking user, detail = the command; success). The same line with a
  refusal (``user NOT in sudoers``, ``command not allowed``, ``3 incorrect password attempts``)
  -> ``sudo.denied`` (failure).
- sshd ``Accepted <method> for X from IP port N`` -> ``session.start`` (session_id
  ``host:sshd[pid]``); ``pam_unix(sshd:session): session closed for user X`` -> ``session.end``
  with the same session_id; ``Failed <method> for [invalid user] X from IP`` and ``User X from IP
  not allowed because ..`` -> ``login.failed`` (failure; the name auditd uses for USER_LOGIN
  res=failed; ``message repeated N times: [ Failed ..]`` too, with attrs.repeated). The
  ``Invalid user X from IP`` notice is ignored: the attempt is its ``Failed .. for invalid user``
  line (or a disconnect before any), so counting both would double a brute force.
- ``pam_unix(su:session): session opened for user root by alice(uid=..)`` -> ``su``;
  ``FAILED SU (to root) alice on pts/0`` (util-linux) / ``FAILED su for root by alice``
  (shadow-utils) -> ``su.denied`` (failure; its pam_unix(su:auth) line is ignored).
- Linux-PAM before 0.99 (``su(pam_unix)[21416]: session opened for user cyrus by (uid=0)``,
  ``sshd(pam_unix)[2201]: session closed ..``) is read as the ``pam_unix(su:session)`` form.
- useradd, userdel, usermod, groupadd, groupdel, groupmod, gpasswd, passwd, chpasswd, chage ->
  ``user.add`` / ``user.delete`` / ``user.modify`` / ``user.password_change`` / ``group.add`` /
  ``group.delete`` / ``group.modify`` (connectors/syslog_accounts.py).

Sessions: a ``sudo.command``, ``sudo.denied``, ``su`` or ``su.denied`` row gets the session_id of the sshd login
(session.start .. session.end, open-ended when the file has no end) of its actor on the same
host that contains it, set-based in the batch's SQL (LINK_SQL) over this file's rows. Several
such logins open: the one whose tty (sshd ``Starting session: shell on pts/N ..``, same pid)
equals the sudo TTY, else NULL with attrs.session_link = ``ambiguous: N open logins``; a login
whose tty is known and differs from the sudo TTY is never its login. Never across hosts. A
login without its end in the file is open to the file's end (session_link says so).

Every other well-formed line (``last message repeated N times`` too, with an empty host field)
goes to the ``ignored`` batch (event_type = the program name). A line with no recognisable
syslog header is quarantined.

Year-less RFC 3164 timestamps: the first line is in ``options.year`` when given; otherwise the
LAST line is in the year of the file's modification time (the previous year when its month is
later than the mtime's month). A month that falls by six or more between consecutive lines is a
Dec -> Jan rollover. attrs.year_inferred says which rule was used. A year from the mtime that
puts an event after the mtime or more than 400 days before it is a warning of the file naming
the year used. RFC 3164 carries no zone: without ``--tz`` mapped lines are quarantined saying
so. A zone-less local time that occurs twice (the autumn change) or never (spring) is
quarantined (``ambiguous local time`` / ``non-existent local time``) unless ``--option
dst=earlier|later`` says which of its two UTC instants to take (connectors.base.local_to_utc,
the rule every connector and the SQL reader share).

Shared helpers (read_lines, staged_frames, assign_years, ...) live in connectors/textlog.py.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from connectors.base import Options, Staged, dst_of, local_to_utc
from connectors.syslog_accounts import PROGRAMS as ACCOUNT_PROGRAMS, account_change
from connectors.textlog import (BSD_TS, MONTHS, assign_years, attrs_json, ignored_row,  # noqa: F401
                               parse_iso, quarantined_row, read_lines,
                               staged_frames, zone_of)
from correlate.errors import InputError

# ---------------------------------------------------------------- syslog lines

_RFC5424 = re.compile(r"<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+)"
                      r"(?: \ufeff?(.*))?")
_ISO_HEAD = re.compile(r"(?:<\d{1,3}>)?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
                       r"(?:Z|[+-]\d{2}:?\d{2})?) (\S+) (.*)")
# the host may be empty: "Feb 22 10:21:43  sshd[1332]: last message repeated 2 times"
_BSD_HEAD = re.compile(r"(?:<\d{1,3}>)?" + BSD_TS + r" (\S*) (.*)")
_TAG = re.compile(r"([^\s\[\]:]+)(?:\[(\d+)\])?: ?(.*)")
_OLD_PAM = re.compile(r"([\w-]+)\(pam_unix\)")
_ZONED = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")

_ACCEPTED = re.compile(r"Accepted (\S+) for (.*?) from (\S+) port (\d+)(?: (\S+))?(?:: (.*))?$")
_FAILED = re.compile(r"Failed (\S+) for (invalid user )?(.*?) from (\S+) port (\d+)")
_NOT_ALLOWED = re.compile(r"User (\S+) from (\S+) not allowed because (.*)$")
_STARTING = re.compile(r"Starting session: \S+(?: \S+)* on (\S+) for (\S+) from")
_REPEATED = re.compile(r"message repeated (\d+) times: \[ ?(.*?)\]?$")
_SSH_CLOSED = re.compile(r"pam_unix\(sshd:session\): session closed for user (\S+)")
_SU_OPENED = re.compile(r"pam_unix\(su(?:-l)?:session\): session opened for user (\S+?)"
                        r"(?:\(uid=\d+\))? by (\S*?)(?:\(uid=(\d+)\))?$")
_SU_FAILED = re.compile(r"FAILED SU \(to (\S+)\) (\S+) on (\S+)$|FAILED su for (\S+) by (\S+)$")
_SUDO_KEY = re.compile(r"([A-Z]+)=(.*)")
_SSHD = ("sshd", "sshd-session", "sshd-auth")
FAR_DAYS = 400

# The activity batch: this file's rows (`inner`, a CAST SELECT with the hidden columns _aux and
# _tty), with each sudo/su row linked to the sshd login of its actor on its host that contains
# it. _aux = 'tty' rows are sshd "Starting session .. on pts/N" lines (counted as ignored in
# their own batch): they name the tty of a login and are dropped here.
LINK_SQL = """
WITH s AS ({inner}),
r AS (SELECT * FROM s WHERE _aux IS NULL),
tty AS (SELECT session_id, min(_tty) AS tty FROM s WHERE _aux = 'tty' GROUP BY session_id),
logins AS (
    SELECT st.line, st.session_id, st.account, st.target, st.ts AS start_ts, t.tty,
           min(e.ts) AS end_ts
    FROM r st LEFT JOIN tty t ON t.session_id = st.session_id
    LEFT JOIN r e ON e.action = 'session.end' AND e.reason IS NULL
        AND e.session_id = st.session_id AND e.ts >= st.ts
    WHERE st.action = 'session.start' AND st.reason IS NULL AND st.session_id IS NOT NULL
    GROUP BY st.line, st.session_id, st.account, st.target, st.ts, t.tty),
cand AS (
    SELECT c.line, l.session_id, l.tty, c._tty AS cmd_tty, l.end_ts IS NULL AS open_ended
    FROM r c JOIN logins l ON l.account = c.actor AND l.target = c.target
        AND c.ts >= l.start_ts AND (l.end_ts IS NULL OR c.ts <= l.end_ts)
    WHERE c.action IN ('sudo.command', 'sudo.denied', 'su', 'su.denied') AND c.reason IS NULL
        AND c.session_id IS NULL),
pick AS (
    -- a login whose tty is known and differs from the command's is not its login
    SELECT line, count(*) FILTER (WHERE tty = cmd_tty) AS eq,
           count(*) FILTER (WHERE tty IS NULL OR cmd_tty IS NULL OR tty = cmd_tty) AS m,
           min(session_id) FILTER (WHERE tty = cmd_tty) AS by_tty,
           min(session_id) FILTER (WHERE tty IS NULL OR cmd_tty IS NULL OR tty = cmd_tty) AS any_sid,
           bool_or(open_ended) FILTER (WHERE tty = cmd_tty) AS by_tty_open,
           bool_or(open_ended) FILTER (WHERE tty IS NULL OR cmd_tty IS NULL OR tty = cmd_tty)
               AS any_open,
           count(*) AS n, min(cmd_tty) AS cmd_tty
    FROM cand GROUP BY line)
SELECT r.line, r.raw, r.reason, r.event_id, r.ts, r.account, r.target, r.action, r.detail,
       coalesce(r.session_id, CASE WHEN p.eq = 1 THEN p.by_tty WHEN p.m = 1 THEN p.any_sid END)
           AS session_id, r.actor, r.approval_ref, r.actor_kind, r.read_only,
       CASE WHEN p.line IS NULL THEN r.attrs
            ELSE CAST(json_merge_patch(coalesce(r.attrs, '{{}}'), json_object('session_link',
                 CASE WHEN p.eq = 1 THEN 'tty' || CASE WHEN p.by_tty_open THEN ' (login not ended in this file)' ELSE '' END
                      WHEN p.m = 1 THEN 'the only open login' || CASE WHEN p.any_open THEN ' (login not ended in this file)' ELSE '' END
                      WHEN p.m = 0 THEN 'none: no open login on ' || p.cmd_tty || ' (' || p.n
                           || ' on other ttys)'
                      ELSE 'ambiguous: ' || p.m || ' open logins' END)) AS VARCHAR)
       END AS attrs,
       r.outcome
FROM r LEFT JOIN pick p ON p.line = r.line
"""


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
            "outcome": "failure" if notes else "success",
            "account": keys.get("USER", "root"), "actor": user.strip(),
            "detail": rest[pos + len("COMMAND="):], "tty": keys.get("TTY"),
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
                "outcome": "success",
                "attrs": {"method": m.group(1), "src_ip": m.group(3), "src_port": m.group(4),
                          "key": m.group(6)}}
    m = _FAILED.match(msg)
    if m:
        return {"action": "login.failed", "account": m.group(3) or "(empty)",
                "actor": m.group(3) or None, "outcome": "failure",
                "detail": f"{m.group(1)} from {m.group(4)} port {m.group(5)}", "session": True,
                "attrs": {"method": m.group(1), "src_ip": m.group(4), "src_port": m.group(5),
                          "service": "sshd", "invalid_user": True if m.group(2) else None,
                          "repeated": repeated}}
    m = _NOT_ALLOWED.match(msg)
    if m:
        return {"action": "login.failed", "account": m.group(1), "actor": m.group(1),
                "outcome": "failure", "detail": f"from {m.group(2)}", "session": True,
                "attrs": {"src_ip": m.group(2), "service": "sshd", "denied": m.group(3)}}
    m = _SSH_CLOSED.match(msg)
    if m:
        return {"action": "session.end", "account": m.group(1), "actor": m.group(1),
                "detail": None, "session": True, "outcome": "success", "attrs": {}}
    m = _STARTING.match(msg)
    if m:
        return {"aux": "tty", "tty": m.group(1), "session": True}
    return None


def _su(msg: str) -> dict | None:
    m = _SU_FAILED.match(msg)
    if m:
        account, actor = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(5))
        return {"action": "su.denied", "account": account, "actor": actor, "detail": None,
                "outcome": "failure", "tty": m.group(3), "attrs": {"tty": m.group(3)}}
    m = _SU_OPENED.match(msg)
    if not m:
        return None
    return {"action": "su", "account": m.group(1), "actor": m.group(2) or None, "detail": None,
            "outcome": "success", "actor_kind": None if m.group(2) else "service",
            "attrs": {"by_uid": m.group(3)}}


def classify(prog: str, msg: str) -> dict | None:
    """The activity a message describes, or None when pamcorr has no use for it."""
    if prog == "sudo":
        return _sudo(msg)
    if prog in _SSHD:
        return _sshd(msg)
    if prog in ("su", "su-l"):
        return _su(msg)
    if prog in ACCOUNT_PROGRAMS:
        return account_change(msg)
    return None


def legacy_pam(prog: str, msg: str) -> tuple[str, str]:
    """Linux-PAM before 0.99 (``su(pam_unix)[..]: session opened ..``) as the modern form."""
    m = _OLD_PAM.fullmatch(prog)
    if not m:
        return prog, msg
    svc = m.group(1)
    facility = ("session" if msg.startswith("session ") else
                "chauthtok" if msg.startswith("password changed") else "auth")
    return svc, f"pam_unix({svc}:{facility}): {msg}"


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
    """sshd / sudo / su lines and account changes of auth.log or secure."""

    name = "syslog"
    kinds = ("auto",)
    description = ("Linux auth.log / secure: sudo commands, sshd logins and failures, su, "
                   "account and group changes (activity)")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        tz = zone_of(options)
        host_override = options.extra.get("host")
        try:
            dst = dst_of(options)
        except InputError as exc:
            raise InputError(str(exc), str(path)) from None
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
        span: list[datetime] = []           # the UTC times of rows dated by the mtime's year
        for (line, text, head), year in zip(parsed, years):
            if head is None:
                rows["activity"].append(quarantined_row(
                    line, text, "unrecognised line: no RFC 3164, ISO or RFC 5424 syslog header"))
                continue
            ts_kind, ts_parts, host, message = head
            tag = _TAG.match(message)
            prog, pid, msg = (tag.group(1), tag.group(2), tag.group(3)) if tag else ("", None, message)
            prog, msg = legacy_pam(prog, msg)
            found = classify(prog, msg)
            if found is None or found.get("aux"):
                rows["ignored"].append(ignored_row(line, text, prog or "syslog"))
                if found is None:
                    continue
            target = host_override or host
            if not target:
                if not found.get("aux"):
                    rows["activity"].append(quarantined_row(
                        line, text, "no host in the syslog header: set --option host=NAME"))
                continue
            session_id = f"{target}:{prog}[{pid}]" if found.get("session") and pid else None
            if found.get("aux"):
                rows["activity"].append({"line": line, "_aux": found["aux"], "_tty": found["tty"],
                                         "session_id": session_id})
                continue
            ts, problem = self._timestamp(ts_kind, ts_parts, year, tz, dst)
            if problem:
                rows["activity"].append(quarantined_row(line, text, problem))
                continue
            key = hashlib.sha256("\x1f".join(
                (target, ts.isoformat(), prog, pid or "", msg)).encode()).hexdigest()[:20]
            seen[key] = seen.get(key, 0) + 1
            attrs = dict(found["attrs"], pid=pid)
            if ts_kind == "bsd":
                attrs["year_inferred"] = rule
                if rule == "mtime":
                    span.append(ts)
            rows["activity"].append({
                "line": line, "raw": text, "reason": None,
                "event_id": f"{target}:{key}" + (f"#{seen[key]}" if seen[key] > 1 else ""),
                "ts": ts, "account": found["account"], "target": target,
                "action": found["action"], "detail": found["detail"], "session_id": session_id,
                "actor": found["actor"], "actor_kind": found.get("actor_kind"),
                "outcome": found.get("outcome"), "attrs": attrs_json(attrs),
                "_tty": found.get("tty")})
        staged = staged_frames(rows, hidden={"activity": ("_aux", "_tty")})
        for batch in staged:
            if batch.table == "activity":
                batch.sql = LINK_SQL.format(inner=batch.sql)
        if staged:
            staged[0].warnings = year_warnings(span, path)
        return staged

    @staticmethod
    def _timestamp(ts_kind, parts, year, tz, dst) -> tuple[datetime | None, str | None]:
        if ts_kind == "iso":
            if tz is None or _ZONED.search(parts):
                return parse_iso(parts, tz)
            try:    # zone-less ISO time read in --tz: the daylight-saving check applies
                naive = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", parts))
            except ValueError:
                return parse_iso(parts, tz)
            return local_to_utc(naive, tz, dst)
        mon, day, hh, mm, ss, frac = parts
        try:
            naive = datetime(year, MONTHS[mon], int(day), int(hh), int(mm), int(ss),
                             int((frac or "0").ljust(6, "0")))
        except ValueError:
            return None, f"invalid date {mon} {day} {hh}:{mm}:{ss} in inferred year {year}"
        if tz is None:
            return None, ("timestamp without time zone (RFC 3164 syslog carries none): "
                          "set the source zone with --tz")
        return local_to_utc(naive, tz, dst)


def year_warnings(times: list[datetime], path: Path) -> list[str]:
    """Why the year taken from the file's mtime looks wrong (events after the mtime, or more
    than FAR_DAYS days before it), naming the year used; empty when it looks right."""
    if not times:
        return []
    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    first, last = min(times), max(times)
    years = "/".join(str(y) for y in sorted({t.year for t in times}))
    used = (f"year-less timestamps dated {years} from the file's modification time "
            f"({mtime:%Y-%m-%d}); set --year if that is wrong")
    if last > mtime:
        return [f"{used}: events after the file was last written ({last:%Y-%m-%d %H:%M}Z)"]
    if mtime - first > timedelta(days=FAR_DAYS):
        return [f"{used}: events more than {FAR_DAYS} days before it ({first:%Y-%m-%d})"]
    return []
