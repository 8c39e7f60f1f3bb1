"""CyberArk PAS Vault audit (syslog) -> approvals (password checkouts) and activity (PSM).

Input, one record per line: Elastic's ``elastic-json-v1.0`` XSL output (a JSON object with
``syslog.audit_record`` and/or the ``raw`` XML), with or without an RFC 5424 or legacy syslog
prefix; or plain ``<syslog><audit_record>..</audit_record></syslog>`` XML, which may span
lines (line = where it starts). XML with a DTD is refused (quarantined). Time: IsoTimestamp,
else the RFC 5424 header, else the year-less ``Timestamp`` / legacy header (year and zone
as in connectors.syslog: --year or file mtime, and --tz). A zone-less time that a
daylight-saving change makes ambiguous or non-existent is quarantined unless
options.extra['dst'] is `earlier` or `later` (connectors.base.local_to_utc).

Checkouts -> approvals: 295 Retrieve Password, 308 Use Password, 428 Retrieve SSH Key.
  The approval covers the Issuer (requester) using the TARGET account (CAProperties UserName,
  the same name PSM sessions report as User) on the target address (CAProperties Address,
  else DstHost): approvals.account = the target account, so it matches the PSM activity rows.
  approval_id = ``ca:`` + a hash of MessageID, IsoTimestamp, Issuer, Safe, File, Station.
  Window: from the checkout for options.extra['checkout_minutes'] (60). PSM sessions of the
  same Issuer + account + address that CONNECT inside that window are linked to it; when every
  linked session's Disconnect is known the window ends at the last Disconnect (PSM held the
  password for exactly that long), otherwise at the later of the two.
  Checkouts are staged as approval events (connectors/approval_events.py) and folded by the
  store with the stored PSM rows (CHECKOUT_FOLD_SQL), so a checkout in one file and its session
  in the next (or files read in any order) link as in one stream.
  ticket = first match of options.extra['ticket_regex'] (group 1 if it has groups) in Reason;
  Reason itself -> approval_reason (approvals.reason).
PSM -> activity, session_id = SessionID, actor = Issuer, account = ExtraDetails User,
  target = DstHost, approval_ref = the linked checkout:
  300 PSM Connect -> ``session.start``, 302 PSM Disconnect -> ``session.end`` (attrs.duration_s),
  361/412 Keystroke logging -> ``psm.command``, 359 SQL Command -> ``psm.sql``, 411 Window
  title -> ``psm.window``; any other record whose ExtraDetails carries SessionID and Command ->
  ``psm.command``. The store sets approval_ref (CHECKOUT_LINKS_SQL) across files.
Every other MessageID is ignored (event_type = "<id> <Desc>").
"""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

from connectors.approval_events import Fold, event_row, events_batch
from connectors.base import (TS_MAX, TS_RANGE, Options, Staged, dst_of, local_to_utc,
                             naive_iso)
from connectors.textlog import (BSD_TS, MONTHS, assign_years, attrs_json, ignored_row,
                               parse_iso, quarantined_row, read_lines, staged_frames, zone_of)
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


def _key_sql(issuer: str, account: str, target: str) -> str:
    """The fold key: who checked out which account on which address (lower case)."""
    return (f"coalesce(lower({issuer}), '') || chr(31) || lower({account}) || chr(31) "
            f"|| lower({target})")


CHECKOUT_KEY_SQL = _key_sql("fields->>'issuer'", "fields->>'account'", "fields->>'target'")
ACTIVITY_KEY_SQL = _key_sql("actor", "account", "target")

# Checkouts (fold_events) and the PSM rows of the same issuer, account and address
# (fold_activity), wherever they were read. A session is linked to the latest checkout at or
# before its start (its Connect, else its Disconnect minus SessionDuration) whose window
# (checkout_minutes, kept per checkout) covers that start; of checkouts at the same instant the
# last one read. A checkout ends at the last Disconnect of its linked sessions when every one
# has its Disconnect, else at the later of its window end and those Disconnects.
_CHECKOUT_CTES = f"""
WITH c AS (
    SELECT approval_id, fold_key, ts, struct_pack(t := ts, i := ingest_id, l := line) AS ord,
        fields->>'account' AS account, fields->>'target' AS target,
        fields->>'issuer' AS issuer, fields->>'ticket' AS ticket, fields->>'reason' AS reason,
        to_seconds(CAST(fields->>'window_s' AS DOUBLE)) AS window
    FROM fold_events WHERE event IN ({", ".join(f"'{m}'" for m in CHECKOUTS)})),
c_at AS (SELECT * FROM c QUALIFY row_number() OVER (PARTITION BY fold_key, ts ORDER BY ord DESC) = 1),
s AS (
    SELECT session_id, arg_min(fold_key, action <> 'session.start') AS fold_key,
        min(ts) FILTER (WHERE action = 'session.start') AS connect_ts,
        max(ts) FILTER (WHERE action = 'session.end') AS disconnect_ts,
        max(TRY_CAST(attrs->>'duration_s' AS DOUBLE)) FILTER (WHERE action = 'session.end')
            AS duration_s
    FROM fold_activity
    WHERE session_id IS NOT NULL AND action IN ('session.start', 'session.end')
    GROUP BY session_id),
sl AS (
    SELECT s.session_id, s.disconnect_ts,
        CASE WHEN s.start <= c.ts + c.window THEN c.approval_id END AS checkout
    FROM (SELECT *, coalesce(connect_ts, disconnect_ts - to_seconds(coalesce(duration_s, 0)))
                    AS start FROM s) s
    ASOF LEFT JOIN c_at c ON c.fold_key = s.fold_key AND s.start >= c.ts)
"""

CHECKOUT_FOLD_SQL = _CHECKOUT_CTES + """
SELECT c.approval_id, c.fold_key, c.account, c.target, c.ts AS start_ts,
    CASE WHEN e.n = e.closed THEN e.last_end
         ELSE greatest(c.ts + c.window, e.last_end) END AS end_ts,
    c.ticket, c.issuer AS requester, NULL::VARCHAR AS approver, 'standard' AS kind,
    'approved' AS status, NULL::TIMESTAMPTZ AS revoked_at, c.reason AS approval_reason,
    NULL::VARCHAR[] AS targets, NULL::VARCHAR AS problem
FROM c LEFT JOIN (
    SELECT checkout, count(*) AS n, count(disconnect_ts) AS closed, max(disconnect_ts) AS last_end
    FROM sl WHERE checkout IS NOT NULL GROUP BY checkout) e ON e.checkout = c.approval_id
"""

# Every PSM row cites its session's checkout; a row of no known session, the checkout found for
# its own time (the same rule).
CHECKOUT_LINKS_SQL = _CHECKOUT_CTES + """,
t AS (
    SELECT a.act_id, CASE WHEN a.ts <= c.ts + c.window THEN c.approval_id END AS by_time
    FROM fold_activity a ASOF LEFT JOIN c_at c ON c.fold_key = a.fold_key AND a.ts >= c.ts)
SELECT a.act_id, CASE WHEN sl.session_id IS NOT NULL THEN sl.checkout ELSE t.by_time END
    AS approval_ref
FROM fold_activity a JOIN t USING (act_id) LEFT JOIN sl ON sl.session_id = a.session_id
"""


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


_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.I)
_DTD_REASON = "XML with a DTD or entity declaration is not accepted"


def _from_xml(text: str) -> dict | str:
    if _DTD.search(text):
        return _DTD_REASON
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
    except (ValueError, RecursionError):     # RecursionError: nested too deeply
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
    approval_fold = Fold(CHECKOUT_FOLD_SQL, activity_key=ACTIVITY_KEY_SQL, links=CHECKOUT_LINKS_SQL)
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
        tz, dst = zone_of(options), dst_of(options)
        for entry, year in zip(entries, years):
            if isinstance(entry["rec"], dict):
                entry["ts"], problem = self._time(entry, year, tz, dst)
                if problem:
                    entry["rec"] = problem
        rows: dict[str, list[dict]] = {"activity": [], "ignored": []}
        checkouts: list[dict] = []
        self._index(entries)
        for e in entries:
            rec = e["rec"]
            if isinstance(rec, str):
                if e.get("mid") in CHECKOUTS:
                    checkouts.append(quarantined_row(e["line"], e["raw"], rec))
                else:
                    rows["activity"].append(quarantined_row(e["line"], e["raw"], rec))
            elif e["mid"] in CHECKOUTS:
                checkouts.append(self._checkout(e, ticket_re, minutes * 60))
            elif e.get("psm"):
                rows["activity"].append(self._activity(e))
            else:
                label = f"{e['mid']} {rec.get('Desc') or rec.get('Action') or ''}".strip()
                rows["ignored"].append(ignored_row(e["line"], e["raw"], label))
        # Checkouts last: the store folds them with the file's PSM rows already stored.
        activity, ignored = staged_frames({"activity": rows["activity"]}), \
            staged_frames({"ignored": rows["ignored"]})
        return activity + [events_batch(checkouts, CHECKOUT_KEY_SQL)] + ignored

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
                rec = (_DTD_REASON if _DTD.search(prefix)      # a DTD before <syslog> too
                       else _from_xml("\n".join(parts)) if closing in parts[-1]
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
    def _time(entry: dict, year: int | None, tz,
              dst: str | None = None) -> tuple[datetime | None, str | None]:
        rec = entry["rec"]
        iso = str(rec.get("IsoTimestamp") or "").strip()
        if not iso:
            m = _RFC5424.match(entry["prefix"])
            iso = m.group(1) if m else ""
        if iso:
            naive = naive_iso(iso)
            if naive is not None and tz is not None:     # a DST change: connectors.base
                return local_to_utc(naive, tz, dst)
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
        return local_to_utc(naive, tz, dst)

    # -- linking -------------------------------------------------------------------------

    def _index(self, entries: list[dict]) -> None:
        """Account, target and issuer of every record; checkout ids; PSM records marked."""
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
            elif e["mid"] in ("300", "302") or e["mid"] in COMMANDS or (
                    extra.get("SessionID") and extra.get("Command")):
                e["psm"] = True
                if not e["account"] or not e["target"]:
                    e["rec"] = "missing required field: User or DstHost (account / target)"
                    e["psm"] = False

    # -- rows ----------------------------------------------------------------------------

    @staticmethod
    def _checkout(e: dict, ticket_re: re.Pattern, window_s: float) -> dict:
        try:
            ends = e["ts"] + timedelta(seconds=window_s)
        except OverflowError:
            ends = None
        if ends is None or ends > TS_MAX:       # the approval's end must be a storable time
            return quarantined_row(e["line"], e["raw"], f"checkout window ends after "
                                   f"9999-12-31T23:59:59Z ({TS_RANGE}): {e['ts'].isoformat()} "
                                   f"+ {window_s:g} s")
        reason = (e["rec"].get("Reason") or "").strip() or None
        m = ticket_re.search(reason or "")
        ticket = (m.group(1) if m and ticket_re.groups else m.group(0) if m else None)
        # fold_key is computed in SQL (CHECKOUT_KEY_SQL) so it equals ACTIVITY_KEY_SQL exactly.
        return event_row(e["line"], e["raw"], None, e["approval_id"], e["approval_id"], e["mid"],
                         e["ts"], {"account": e["account"], "target": e["target"],
                                   "issuer": e["issuer"], "ticket": ticket, "reason": reason,
                                   "window_s": window_s})

    def _activity(self, e: dict) -> dict:
        """A PSM row; its approval_ref is the store's to set (CHECKOUT_LINKS_SQL)."""
        rec, extra, mid = e["rec"], e["extra"], e["mid"]
        sid = extra.get("SessionID")
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
                "approval_ref": None,
                "actor_kind": None, "read_only": None, "attrs": attrs_json(attrs)}
