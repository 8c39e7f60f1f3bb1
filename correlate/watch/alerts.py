"""Alerts: which verdicts and detections alert, their stable ids, the rate limit per
(account, rule), re-judged verdicts as new versions of the same alert, and each sink's text.

Alert id = the first 24 hex digits of sha256(source, event_id, rule), rule = 'verdict' for an
action's verdict or the detection rule's id: the same event gives the same id in every process,
so a restart neither loses nor repeats one (a repeat is the same id and version).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from correlate.detect.rules import SEVERITIES

# A FAIL verdict (not attempt_failed, INFO) alerts, and a detection not muted at or above the
# configured severity. Bodies are JSON made by DuckDB (the text of log records is never
# formatted into anything but a JSON string).
CANDIDATES_SQL = """
CREATE OR REPLACE TEMP TABLE watch_cand AS
SELECT left(sha256(j.source || chr(31) || j.event_id || chr(31) || 'verdict'), 24) AS alert_id,
       j.act_id, lower(j.account) AS account, 'verdict' AS rule, 'high' AS severity, j.ts,
       json_object('alert_id', left(sha256(j.source || chr(31) || j.event_id || chr(31) || 'verdict'), 24),
                   'version', 1, 'state', 'open', 'rule', 'verdict', 'severity', 'high',
                   'verdict', j.verdict, 'status', j.status, 'reason', j.reason,
                   'approval_id', j.approval_id, 'ticket_id', j.ticket_id,
                   'gap_seconds', j.gap_seconds,
                   'ts', strftime(j.ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ'),
                   'source', j.source, 'event_id', j.event_id, 'account', j.account,
                   'target', j.target, 'action', j.action, 'detail', j.detail,
                   'session_id', j.session_id, 'actor', j.actor,
                   'message', j.verdict || ': ' || j.account || ' on ' || j.target || ': '
                              || coalesce(j.action, '') || coalesce(' ' || j.detail, '')
                              || coalesce(' (' || j.reason || ')', '')) AS body
FROM watch_judged j WHERE j.status = 'FAIL' AND $verdicts
UNION ALL
SELECT left(sha256(j.source || chr(31) || j.event_id || chr(31) || d.rule_id), 24),
       j.act_id, lower(j.account), d.rule_id, d.severity, j.ts,
       json_object('alert_id', left(sha256(j.source || chr(31) || j.event_id || chr(31) || d.rule_id), 24),
                   'version', 1, 'state', 'open', 'rule', d.rule_id, 'severity', d.severity,
                   'title', d.title, 'class', d.class, 'review', d.review,
                   'sequence_id', d.sequence_id,
                   'verdict', j.verdict, 'status', j.status, 'reason', j.reason,
                   'approval_id', j.approval_id, 'ticket_id', j.ticket_id,
                   'ts', strftime(j.ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ'),
                   'source', j.source, 'event_id', j.event_id, 'account', j.account,
                   'target', j.target, 'action', j.action, 'detail', j.detail,
                   'session_id', j.session_id, 'actor', j.actor,
                   'message', d.severity || ' ' || d.rule_id || ': ' || d.title || ': '
                              || j.account || ' on ' || j.target || ': '
                              || coalesce(j.action, '') || coalesce(' ' || j.detail, ''))
FROM watch_detected d JOIN watch_judged j USING (act_id)
WHERE list_position($severities, d.severity) IS NOT NULL
"""

# New alerts only (a restart re-judging a chunk finds its alerts stored). Per (account, rule),
# at most $limit alerts in any $window: the rest are stored folded (never sent) and counted in
# one summary alert when their window closes.
INSERT_SQL = """
INSERT INTO watch_alerts (alert_id, version, act_id, account, rule, state, severity, body,
                          created, pending)
SELECT alert_id, 1, act_id, account, rule, CASE WHEN folded THEN 'folded' ELSE 'open' END,
       severity, body, $now, NOT folded
FROM (
  SELECT c.*, row_number() OVER (PARTITION BY c.account, c.rule ORDER BY c.ts, c.alert_id)
              + coalesce(s.sent, 0) > $limit AS folded
  FROM (SELECT * FROM watch_cand c
        WHERE NOT EXISTS (SELECT 1 FROM watch_alerts w WHERE w.alert_id = c.alert_id)
        QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY ts) = 1) c
  LEFT JOIN (SELECT account, rule, count(*) AS sent FROM watch_alerts
             WHERE created > $now - to_seconds($window) AND state = 'open' AND version = 1
             GROUP BY ALL) s USING (account, rule)
)
"""
VERDICTS_SQL = """
INSERT OR REPLACE INTO watch_verdicts
SELECT act_id, verdict, status, approval_id, ticket_id, reason, $now FROM watch_judged
WHERE status = 'FAIL'
"""

# One summary per (account, rule) whose folded alerts' window has closed.
SUMMARY_SQL = """
INSERT INTO watch_alerts (alert_id, version, act_id, account, rule, state, severity, body,
                          created, pending)
SELECT id, 1, NULL, account, rule, 'summary', severity,
       json_object('alert_id', id, 'version', 1, 'state', 'summary', 'rule', rule,
                   'severity', severity, 'account', account, 'folded', n,
                   'first_alert', first_alert, 'folded_alert_ids', ids,
                   'message', n || ' more ' || rule || ' alerts for ' || account
                              || ' folded by the rate limit since ' || first_alert),
       $now, true
FROM (
  SELECT left(sha256('summary' || chr(31) || account || chr(31) || rule || chr(31)
                     || min(alert_id)), 24) AS id,
         account, rule, max(severity) AS severity, count(*) AS n,
         strftime(min(created) AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS first_alert,
         list(alert_id ORDER BY created, alert_id)[1:20] AS ids
  FROM watch_alerts WHERE state = 'folded' AND NOT summarized
  GROUP BY account, rule HAVING min(created) <= $now - to_seconds($window))
ON CONFLICT DO NOTHING
"""
SUMMARIZED_SQL = """
UPDATE watch_alerts SET summarized = true
WHERE state = 'folded' AND NOT summarized AND (account, rule) IN (
    SELECT (account, rule) FROM watch_alerts WHERE state = 'folded' AND NOT summarized
    GROUP BY ALL HAVING min(created) <= $now - to_seconds($window))
"""

# A re-judged action whose verdict changed: the verdict row follows, and its alert (when one
# was sent) gets a new version saying what happened, never a silent change.
CHANGED_SQL = """
CREATE OR REPLACE TEMP TABLE watch_changed AS
SELECT j.*, v.verdict AS old_verdict, v.approval_id AS old_approval
FROM watch_judged j JOIN watch_verdicts v USING (act_id)
WHERE j.verdict IS DISTINCT FROM v.verdict
   OR j.approval_id IS DISTINCT FROM v.approval_id OR j.ticket_id IS DISTINCT FROM v.ticket_id
"""
UPDATE_VERDICTS_SQL = """
UPDATE watch_verdicts v SET verdict = c.verdict, status = c.status, approval_id = c.approval_id,
       ticket_id = c.ticket_id, reason = c.reason, judged = $now
FROM watch_changed c WHERE v.act_id = c.act_id
"""
UPDATE_ALERTS_SQL = """
INSERT INTO watch_alerts (alert_id, version, act_id, account, rule, state, severity, body,
                          created, pending)
SELECT a.alert_id, a.version + 1, a.act_id, a.account, a.rule, s.state, a.severity,
       json_object('alert_id', a.alert_id, 'version', a.version + 1, 'state', s.state,
                   'rule', 'verdict', 'severity', a.severity,
                   'verdict', c.verdict, 'status', c.status, 'previous_verdict', c.old_verdict,
                   'reason', c.reason, 'approval_id', c.approval_id, 'ticket_id', c.ticket_id,
                   'ts', strftime(c.ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ'),
                   'source', c.source, 'event_id', c.event_id, 'account', c.account,
                   'target', c.target, 'action', c.action, 'detail', c.detail,
                   'message', s.state || ': '
                     || CASE WHEN c.approval_id IS NOT NULL AND c.status <> 'FAIL'
                             THEN 'approval ' || c.approval_id || ' arrived '
                                  || CASE WHEN s.secs < 120 THEN s.secs || ' s'
                                          ELSE s.secs // 60 || ' min' END
                                  || ' later; now ' || c.verdict
                             ELSE 'now ' || c.verdict END
                     || ' (was ' || c.old_verdict || '): ' || c.account || ' on ' || c.target
                     || ': ' || coalesce(c.action, '')),
       $now, true
FROM watch_changed c
JOIN (SELECT * FROM watch_alerts WHERE rule = 'verdict' AND state <> 'summary'
      QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY version DESC) = 1) a
  ON a.act_id = c.act_id
JOIN watch_alerts first ON first.alert_id = a.alert_id AND first.version = 1,
LATERAL (SELECT CASE WHEN c.status = 'FAIL' THEN 'changed' ELSE 'resolved' END AS state,
                 greatest(round(epoch($now) - epoch(first.created)), 0)::BIGINT AS secs) s
WHERE a.state <> 'folded'
"""


@dataclass(frozen=True)
class AlertPolicy:
    """What alerts and how often: detections at or above `min_severity`; at most `limit`
    alerts per (account, rule) in `window_s` seconds, the rest folded into one summary."""

    min_severity: str = "high"
    limit: int = 5
    window_s: int = 60

    def severities(self) -> list[str]:
        return list(SEVERITIES[SEVERITIES.index(self.min_severity):])


def store_new(con, policy: AlertPolicy, now: datetime, verdicts: bool = True) -> None:
    """Inside the transaction that stored the judged actions: their verdicts and verdict
    alerts (`verdicts`), and the alerts of their detections (watch_detected, empty when the
    rules did not run)."""
    con.execute(CANDIDATES_SQL, {"severities": policy.severities(), "verdicts": verdicts})
    con.execute(INSERT_SQL, {"now": now, "limit": policy.limit, "window": policy.window_s})
    if verdicts:
        con.execute(VERDICTS_SQL, {"now": now})


def store_rejudged(con, now: datetime) -> int:
    """After judging the open verdicts again: update what changed, one new alert version
    each. Returns how many verdicts changed."""
    con.execute(CHANGED_SQL)
    changed = con.execute("SELECT count(*) FROM watch_changed").fetchall()[0][0]
    if changed:
        con.execute(UPDATE_ALERTS_SQL, {"now": now})
        con.execute(UPDATE_VERDICTS_SQL, {"now": now})
    return changed


def store_summaries(con, policy: AlertPolicy, now: datetime) -> None:
    params = {"now": now, "window": policy.window_s}
    con.execute(SUMMARY_SQL, params)
    con.execute(SUMMARIZED_SQL, params)


# ---------------------------------------------------------------------- sink texts

# Characters a parsed JSON value keeps but raw bytes should not show (a terminal or a log
# viewer would obey them): bidi controls, line and paragraph separators, zero-width marks.
_INVISIBLE = re.compile("[\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def json_line(alert: dict) -> str:
    """One JSON line; the invisible characters written as \\uXXXX escapes (same value)."""
    text = json.dumps(alert, ensure_ascii=False, separators=(",", ":"))
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def slack_escape(text: str) -> str:
    """Slack mrkdwn control characters (&, <, >): `<!channel>` or a link cannot be forged."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(alert: dict) -> dict:
    from correlate.errors import printable
    text = slack_escape(printable(alert.get("message", "")))
    head = f"*pamcorr {slack_escape(printable(alert.get('state', '')))}* " \
           f"`{slack_escape(printable(alert.get('alert_id', '')))}`"
    return {"text": f"{head} {text}", "mrkdwn": True}


def _sd_value(value) -> str:
    from correlate.errors import printable
    return printable(str(value)).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}


def syslog_5424(alert: dict, host: str, when: datetime, facility: int = 10) -> bytes:
    """RFC 5424: the alert's id, version, state and rule as structured data, the message with
    control characters escaped (a newline in a command cannot start a second message)."""
    from correlate.errors import printable
    pri = facility * 8 + SYSLOG_SEVERITY.get(alert.get("severity", "high"), 3)
    sd = " ".join(f'{k}="{_sd_value(alert[k])}"'
                  for k in ("alert_id", "version", "state", "rule", "account", "verdict")
                  if alert.get(k) is not None)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    msg = printable(alert.get("message", ""))
    return (f"<{pri}>1 {stamp} {host or '-'} pamcorr - alert [pamcorr@32473 {sd}] "
            f"\ufeff{msg}").encode("utf-8")

# What the sinks acknowledged, in one statement: (alert_id, version, sink, outcome) lists.
ACKS_SQL = """
UPDATE watch_alerts w
SET delivered = list_distinct(list_concat(w.delivered, a.ok)),
    dead = list_distinct(list_concat(w.dead, a.lost))
FROM (SELECT id, v, coalesce(list(sink) FILTER (WHERE outcome = 'delivered'), []) AS ok,
             coalesce(list(sink) FILTER (WHERE outcome = 'dead'), []) AS lost
      FROM (SELECT unnest(?::VARCHAR[]) AS id, unnest(?::INTEGER[]) AS v,
                   unnest(?::VARCHAR[]) AS sink, unnest(?::VARCHAR[]) AS outcome)
      GROUP BY id, v) a
WHERE w.alert_id = a.id AND w.version = a.v
"""
DONE_SQL = ("UPDATE watch_alerts SET pending = false WHERE pending AND "
            "list_has_all(list_concat(delivered, dead), ?)")


def pending_sql(limit: int) -> str:
    return ("SELECT alert_id, version, body, delivered, dead FROM watch_alerts WHERE pending "
            f"ORDER BY created, body->>'ts', alert_id, version LIMIT {int(limit)}")


def window(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)
