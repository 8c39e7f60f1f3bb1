"""CyberArk PAS Vault audit (syslog) -> approvals (password checkouts) and activity (PSM).

Input, one record per line: Elastic's ``elastic-json-v1.0`` XSL output (a JSON object with
``syslog.audit_record`` and/or the ``raw`` XML), with or without an RFC 5424 or legacy syslog
prefix; or plain ``<syslog><audit_record>..</audit_record></syslog>`` XML, which may span
lines (line = where it starts). XML with a DTD is refused (quarantined). Time: IsoTimestamp,
else the RFC 5424 header, else the year-less ``Timestamp`` / legacy header (year and zone
as in connectors.syslog: --year or file mtime, and --tz).

Checkouts -> approvals: 295 Retrieve Password, 308 Use Password, 428 Retrieve SSH Key.
  The approval covers the Issuer (requester) using the TARGET account (CAProperties UserName,
  the same name PSM sessions report as User) on the target address (CAProperties Address,
  else DstHost): approvals.account = the target account, so it matches the PSM activity rows.
  approval_id = ``ca:`` + a hash of MessageID, IsoTimestamp, Issuer, Safe, File, Station.
  Window: from the checkout for options.extra['checkout_minutes'] (60). PSM sessions of the
  same Issuer + account + address that CONNECT inside that window are linked to it; when every
  linked session's Disconnect is in the file the window ends at the last Disconnect (PSM held
  the password for exactly that long), otherwise at the later of the two.
  ticket = first match of options.extra['ticket_regex'] (group 1 if it has groups) in Reason;
  Reason itself -> approval_reason (approvals.reason).
PSM -> activity, session_id = SessionID, actor = Issuer, account = ExtraDetails User,
  target = DstHost, approval_ref = the linked checkout:
  300 PSM Connect -> ``session.start``, 302 PSM Disconnect -> ``session.end`` (attrs.duration_s),
  361/412 Keystroke logging -> ``psm.command``, 359 SQL Command -> ``psm.sql``, 411 Window
  title -> ``psm.window``; any other record whose ExtraDetails carries SessionID and Command ->
  ``psm.command``. Linking is within one file (a Vault syslog stream holds all of them).
Every other MessageID is ignored (event_type = "<id> <Desc>").
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

from connectors.base import Options, Staged
from connectors.textlog import (BSD_TS, MONTHS, assign_years, attrs_json, ignored_row,
                               local_to_utc, parse_iso, quarantined_row, read_lines,
                               staged_frames, zone_of)
from correlate.errors import InputError

CHECKOUTS = {"295": "Retrieve Password", "308": "Use Password", "428": "Retrieve SSH Key"}
SESSION = {"300": "session.start", "302": "session.end"}
COMMANDS = {"359": "psm.sql", "361": "psm.command", "411": "psm.window", "412": "psm.command"}
DEFAULT_TICKET_RE = r"\b[A-Z][A-Z0-9]+-\d+\b"
MAX_XML_LINES = 2000
_RFC5424 = re.compile(r"\s*<\d{1,3}>1 (\S+) \S+ ")
_LEGACY = re.compile(r"\s*(?:<\d{1,3}>)?" + BSD_TS + r" \S+ ")
_BSD = re.compile(BSD_TS)
_SPLIT = re.compile(r"(?<!\\);")
_KEYVAL = re.compile(r"((?:[^=\\]|\\.)*)=(.*)", re.S)


def extra_details(text: str | None) -> dict[str, str]:
    """``Key=Value;Key=Value;`` with ``\\;`` and ``\\=`` escapes, as a dict."""
    out = {}
    for part in _SPLIT.split(text or ""):
        m = _KEYVAL.fullmatch(part)
        if m and m.group(1):
            out[m.group(1).replace("\\=", "=")] = m.group(2).replace("\\;", ";").replace("\\=", "=")
    return out


def _props(value) -> dict[str, str]:
    """CAProperties from the JSON form ({"CAProperty": [..] or {..}}) as Name -> Value."""
    items = value.get("CAProperty", []) if isinstance(value, dict) else []
    items = [items] if isinstance(items, dict) else items
    return {str(p.get("Name")): str(p.get("Value", "")) for p in items if isinstance(p, dict)}


def _from_xml(text: str) -> dict | str:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return "XML with a DTD or entity declaration is not accepted"
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        return f"invalid XML: {exc}"
    node = root if root.tag == "audit_record" else root.find("audit_record")
    if node is None:
        return "XML without <audit_record>"
    rec = {child.tag: (child.text or "").strip() for child in node if child.tag != "CAProperties"}
    props = node.find("CAProperties")
    rec["CAProperties"] = ({} if props is None else
                           {p.get("Name", ""): p.get("Value", "") for p in props})
    return rec


def _from_json(text: str) -> dict | str:
    try:
        doc = json.loads(text)
    except ValueError:
        return "invalid JSON"
    if not isinstance(doc, dict):
        return "JSON value is not an object"
    rec = (doc.get("syslog") or {}).get("audit_record") if isinstance(doc.get("syslog"), dict) else None
    if isinstance(rec, dict):
        rec = {k: ("" if v is None else v) for k, v in rec.items()}
        rec["CAProperties"] = _props(rec.get("CAProperties"))
        return rec
    if isinstance(doc.get("raw"), str):
        return _from_xml(doc["raw"])
    return "JSON without syslog.audit_record or raw XML: not a CyberArk audit record"


def _duration_s(text: str | None) -> int | None:
    parts = (text or "").split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]) * 3600 + int(parts[1]) * 60 + int(parts[2])


def _hash(*values) -> str:
    return hashlib.sha256("\x1f".join(str(v or "") for v in values).encode()).hexdigest()[:20]


class CyberArkConnector:
    """CyberArk Vault audit records (Elastic JSON XSL or XML)."""

    name = "cyberark"
    kinds = ("auto",)
    description = ("CyberArk PAS Vault audit syslog: password checkouts (approvals), PSM sessions "
                   "and commands (activity)")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        try:
            ticket_re = re.compile(options.extra.get("ticket_regex") or DEFAULT_TICKET_RE)
            minutes = float(options.extra.get("checkout_minutes", 60))
        except (re.error, TypeError, ValueError) as exc:
            raise InputError(f"bad cyberark option (ticket_regex or checkout_minutes): {exc}") from None
        if minutes <= 0:
            raise InputError("checkout_minutes must be a positive number of minutes")
        entries = self._read(path)
        years, _ = assign_years([e["month"] for e in entries], path, options)
        tz = zone_of(options)
        for entry, year in zip(entries, years):
            if isinstance(entry["rec"], dict):
                entry["ts"], problem = self._time(entry, year, tz)
                if problem:
                    entry["rec"] = problem
        rows: dict[str, list[dict]] = {"approvals": [], "activity": [], "ignored": []}
        checkouts, sessions = self._index(entries)
        self._link(checkouts, sessions, timedelta(minutes=minutes))
        for e in entries:
            rec = e["rec"]
            if isinstance(rec, str):
                table = "approvals" if e.get("mid") in CHECKOUTS else "activity"
                rows[table].append(quarantined_row(e["line"], e["raw"], rec))
            elif e["mid"] in CHECKOUTS:
                rows["approvals"].append(self._approval(e, ticket_re))
            elif e.get("psm"):
                rows["activity"].append(self._activity(e, sessions, checkouts,
                                                       timedelta(minutes=minutes)))
            else:
                label = f"{e['mid']} {rec.get('Desc') or rec.get('Action') or ''}".strip()
                rows["ignored"].append(ignored_row(e["line"], e["raw"], label))
        return staged_frames(rows)

    # -- reading -------------------------------------------------------------------------

    def _read(self, path: Path) -> list[dict]:
        entries, lines = [], read_lines(path)
        for line, text in lines:
            if not text.strip():
                continue
            start, raw = line, text
            xml_at = min((i for i in (text.find("<syslog"), text.find("<audit_record"))
                          if i >= 0), default=-1)
            json_at = text.find("{")
            if xml_at >= 0 and (json_at < 0 or xml_at < json_at):
                prefix, body = text[:xml_at], text[xml_at:]
                closing = "</syslog>" if body.startswith("<syslog") else "</audit_record>"
                parts, n = [body], 1
                while closing not in parts[-1] and n < MAX_XML_LINES:
                    nxt = next(lines, None)
                    if nxt is None:
                        break
                    parts.append(nxt[1])
                    n += 1
                raw = "\n".join([prefix + parts[0]] + parts[1:])
                rec = (_from_xml("\n".join(parts)) if closing in parts[-1]
                       else f"unterminated XML record (no {closing} within {n} lines)")
            elif json_at >= 0:
                prefix, rec = text[:json_at], _from_json(text[json_at:])
            else:
                prefix, rec = "", ("unrecognised line: expected a CyberArk audit record "
                                   "(Elastic JSON XSL or <syslog><audit_record> XML)")
            entry = {"line": start, "raw": raw, "rec": rec, "prefix": prefix, "month": None}
            if isinstance(rec, dict):
                entry["mid"] = str(rec.get("MessageID", "")).strip()
                if not entry["mid"]:
                    entry["rec"] = "missing required field: MessageID"
                elif not str(rec.get("IsoTimestamp") or "").strip() and not _RFC5424.match(prefix):
                    m = _BSD.search(str(rec.get("Timestamp") or "")) or _LEGACY.match(prefix)
                    if m and m.group(1) in MONTHS:
                        entry["month"], entry["bsd"] = MONTHS[m.group(1)], m.groups()[:6]
            entries.append(entry)
        return entries

    @staticmethod
    def _time(entry: dict, year: int | None, tz) -> tuple[datetime | None, str | None]:
        rec = entry["rec"]
        iso = str(rec.get("IsoTimestamp") or "").strip()
        if not iso:
            m = _RFC5424.match(entry["prefix"])
            iso = m.group(1) if m else ""
        if iso:
            return parse_iso(iso, tz)
        if "bsd" not in entry:
            return None, "missing required field: IsoTimestamp (no timestamp in the record)"
        mon, day, hh, mm, ss, frac = entry["bsd"]
        try:
            naive = datetime(year, MONTHS[mon], int(day), int(hh), int(mm), int(ss),
                             int((frac or "0").ljust(6, "0")))
        except ValueError:
            return None, f"invalid date {mon} {day} in inferred year {year}"
        if tz is None:
            return None, ("timestamp without time zone (Vault Timestamp carries none): "
                          "set the source zone with --tz")
        return local_to_utc(naive, tz), None

    # -- linking -------------------------------------------------------------------------

    def _index(self, entries: list[dict]) -> tuple[dict, dict]:
        """Checkouts by (issuer, account, target) sorted by time; PSM sessions by SessionID."""
        checkouts: dict[tuple, list] = {}
        sessions: dict[str, dict] = {}
        for e in entries:
            rec = e["rec"]
            if not isinstance(rec, dict):
                continue
            props, extra = rec.get("CAProperties") or {}, extra_details(rec.get("ExtraDetails"))
            e["extra"] = extra
            e["account"] = extra.get("User") or props.get("UserName") or rec.get("TargetUser") or None
            e["target"] = props.get("Address") or extra.get("DstHost") or None
            if e["mid"] not in CHECKOUTS:
                e["target"] = extra.get("DstHost") or e["target"]
            e["issuer"] = rec.get("Issuer") or None
            if e["mid"] in CHECKOUTS:
                missing = [f for f, v in (("account (CAProperties UserName)", e["account"]),
                                          ("target (CAProperties Address)", e["target"]),
                                          ("Issuer", e["issuer"])) if not v]
                if missing:
                    e["rec"] = f"missing required field: {', '.join(missing)}"
                    continue
                e["approval_id"] = "ca:" + _hash(e["mid"], e["ts"].isoformat(), e["issuer"],
                                                  rec.get("Safe"), rec.get("File"), rec.get("Station"))
                e["linked"] = []
                checkouts.setdefault(self._key(e), []).append(e)
            elif e["mid"] in ("300", "302") or e["mid"] in COMMANDS or (
                    extra.get("SessionID") and extra.get("Command")):
                e["psm"] = True
                if not e["account"] or not e["target"]:
                    e["rec"] = "missing required field: User or DstHost (account / target)"
                    e["psm"] = False
                    continue
                sid = extra.get("SessionID")
                if sid and e["mid"] in ("300", "302"):
                    sessions.setdefault(sid, {})["connect" if e["mid"] == "300" else "disconnect"] = e
        for key, items in checkouts.items():
            items.sort(key=lambda c: c["ts"])
            checkouts[key] = ([c["ts"] for c in items], items)
        return checkouts, sessions

    @staticmethod
    def _key(e: dict) -> tuple:
        return (e["issuer"] or "").lower(), e["account"].lower(), e["target"].lower()

    def _find(self, checkouts: dict, e: dict, at: datetime, window: timedelta) -> dict | None:
        """The latest checkout by the same issuer for the same account+target covering `at`."""
        times, items = checkouts.get(self._key(e), ((), ()))
        i = bisect.bisect_right(times, at) - 1
        return items[i] if i >= 0 and at <= items[i]["ts"] + window else None

    def _link(self, checkouts: dict, sessions: dict, window: timedelta) -> None:
        for sid, pair in sessions.items():
            first = pair.get("connect") or pair["disconnect"]
            start = first["ts"]
            if "connect" not in pair:
                start -= timedelta(seconds=_duration_s(first["extra"].get("SessionDuration")) or 0)
            pair["start"] = start
            pair["checkout"] = self._find(checkouts, first, start, window)
            if pair["checkout"] is not None:
                pair["checkout"]["linked"].append(pair)
        for _, items in checkouts.values():
            for c in items:
                ends = [p["disconnect"]["ts"] for p in c["linked"] if "disconnect" in p]
                default = c["ts"] + window
                if c["linked"] and len(ends) == len(c["linked"]):
                    c["end"] = max(ends)
                else:
                    c["end"] = max([default] + ends)

    # -- rows ----------------------------------------------------------------------------

    @staticmethod
    def _approval(e: dict, ticket_re: re.Pattern) -> dict:
        reason = (e["rec"].get("Reason") or "").strip() or None
        m = ticket_re.search(reason or "")
        ticket = (m.group(1) if m and ticket_re.groups else m.group(0) if m else None)
        return {"line": e["line"], "raw": e["raw"], "reason": None,
                "approval_id": e["approval_id"], "account": e["account"], "target": e["target"],
                "start_ts": e["ts"], "end_ts": e["end"], "ticket": ticket,
                "requester": e["issuer"], "approver": None, "kind": "standard",
                "status": "approved", "revoked_at": None, "approval_reason": reason}

    def _activity(self, e: dict, sessions: dict, checkouts: dict, window: timedelta) -> dict:
        rec, extra, mid = e["rec"], e["extra"], e["mid"]
        sid = extra.get("SessionID")
        pair = sessions.get(sid) if sid else None
        checkout = pair["checkout"] if pair else self._find(checkouts, e, e["ts"], window)
        action = SESSION.get(mid) or COMMANDS.get(mid, "psm.command")
        if mid in SESSION:
            event_id = f"psm:{sid}:{'connect' if mid == '300' else 'disconnect'}" if sid else None
            via = extra.get("ApplicationType") or extra.get("ConnectionComponentId")
            src = f"from {extra['SrcHost']}" if extra.get("SrcHost") else None
            detail = " ".join(x for x in (extra.get("Protocol"), via, src) if x)
        else:
            event_id = None
            detail = extra.get("Command") or extra.get("WindowTitle") or extra.get("Title")
        event_id = event_id or "ca:" + _hash(mid, e["ts"].isoformat(), e["issuer"], rec.get("File"),
                                             rec.get("ExtraDetails"))
        attrs = {"message_id": mid, "safe": rec.get("Safe"), "file": rec.get("File"),
                 "src_host": extra.get("SrcHost"), "protocol": extra.get("Protocol"),
                 "psm_id": extra.get("PSMID"), "database": extra.get("DataBase"),
                 "duration_s": _duration_s(extra.get("SessionDuration")),
                 "process": extra.get("ProcessName")}
        return {"line": e["line"], "raw": e["raw"], "reason": None, "event_id": event_id,
                "ts": e["ts"], "account": e["account"], "target": e["target"], "action": action,
                "detail": detail or None, "session_id": sid, "actor": e["issuer"],
                "approval_ref": checkout["approval_id"] if checkout else None,
                "actor_kind": None, "read_only": None, "attrs": attrs_json(attrs)}
