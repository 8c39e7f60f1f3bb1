"""Fetch Jira issues (Cloud or Server/Data Center) as pamcorr tickets, with the ``jira`` library.

Flavour from ``serverInfo.deploymentType`` unless given.  Cloud:
``enhanced_search_issues`` (``/rest/api/2/search/jql``, ``nextPageToken``); the
removed ``/rest/api/2/search`` is never called there.  Server/DC:
``search_issues`` (``/rest/api/2/search``, ``startAt``).  With
``expand=changelog``; when ``changelog.total`` exceeds the histories received,
``/issue/{key}/changelog`` is paged, or, where Server/DC answers 404 there,
``/issue/{key}?expand=changelog`` (complete on those versions) is read.

The library's retry is off (``max_retries=0``); every call goes through
:func:`connectors.http.retry_call` (429 / 5xx / timeouts, bounded, honouring
``Retry-After``).  The session ignores ``~/.netrc``.  ``JIRAError`` is never
turned into a string (its ``str`` dumps headers).  See docs/tickets.md.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Mapping, TypeVar

import requests
from jira import JIRA, JIRAError
from jira.resilientsession import parse_error_msg

from connectors.http import (
    RETRY_STATUSES, RetryPolicy, check_base_url, configure_session, connection_reason,
    keep_raw_bodies, retry_call,
)
from connectors.ticket_refs import (
    OUR_STATUSES, TicketFetch, TicketFetchError, is_jira_key, parse_jira_time, split_jira_keys,
)

LOG = logging.getLogger(__name__)
T = TypeVar("T")

#: Status names mapped before status categories; ``status_map`` is merged on top.
DEFAULT_STATUS_MAP = {
    "Approved": "approved", "Cancelled": "cancelled", "Canceled": "cancelled",
    "Won't Do": "rejected", "Rejected": "rejected", "Declined": "rejected", "Resolved": "resolved",
}
_CATEGORY = {"new": "requested", "indeterminate": "in_progress", "done": "closed"}
_NOT_EXIST_RE = re.compile(
    r"(?:issue with key|value) '([^']+)' does not exist for (?:the )?field 'key'", re.IGNORECASE)
_MAX_PAGES = 10_000


class _Malformed(Exception):
    """A 2xx body that is JSON but not shaped as documented."""


def jira_credentials_from_env(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """``(user, token)`` from ``PAMCORR_JIRA_USER`` / ``PAMCORR_JIRA_TOKEN`` (empty -> None)."""
    env = os.environ if env is None else env
    return env.get("PAMCORR_JIRA_USER") or None, env.get("PAMCORR_JIRA_TOKEN") or None


def fetch_jira(
    url: str, keys: list[str] | None = None, jql: str | None = None, *,
    user: str | None = None, token: str | None = None, flavour: str | None = None,
    status_map: Mapping[str, str] | None = None,
    planned_start_field: str | None = None, planned_end_field: str | None = None,
    timeout: float = 30.0, max_retries: int = 3, backoff: float = 1.0, max_wait: float = 60.0,
    batch_size: int = 100, page_size: int = 100,
) -> TicketFetch:
    """Fetch exactly ``keys`` (validated, batched ``key in (...)``) or the issues of ``jql``.

    Cloud uses basic auth ``user``/``token`` (e-mail + API token); Server/DC a
    bearer personal access token (``token`` without ``user``).  Raises
    :class:`TicketFetchError` when the credentials are rejected (401) or the
    flavour cannot be detected; per-ticket problems land in the result.
    """
    if (keys is None) == (jql is None):
        raise ValueError("give either keys or jql")
    if flavour not in (None, "cloud", "datacenter"):
        raise ValueError("flavour must be 'cloud', 'datacenter' or None")
    if user and not token:
        raise ValueError("a Jira user was given without a token")
    base = check_base_url(url)
    policy = RetryPolicy(max_retries=max_retries, backoff=backoff, max_wait=max_wait, timeout=timeout)
    statuses = _StatusIndex(status_map)
    result = TicketFetch()
    valid: list[str] = []
    if keys is not None:
        valid, result.invalid = split_jira_keys(keys)
        if not valid:
            return result  # nothing valid: the server is not contacted at all
    client = JIRA(
        server=base, basic_auth=(user, token) if user else None,
        token_auth=token if not user else None, timeout=timeout, max_retries=0,
        get_server_info=False, logging=False)
    try:
        configure_session(client._session, base)  # noqa: SLF001 - no public handle on the session
        run = _JiraRun(client, base, policy, result, statuses,
                       planned_start_field, planned_end_field, page_size)
        run.detect(flavour)
        if keys is not None:
            for i in range(0, len(valid), max(1, batch_size)):
                run.fetch_keys(valid[i:i + max(1, batch_size)])
        else:
            run.fetch_jql(jql or "")
        run.finish()
    finally:
        client.close()
    return result


class _StatusIndex:
    """Maps Jira status names / ids to our statuses (see docs/tickets.md)."""

    def __init__(self, status_map: Mapping[str, str] | None) -> None:
        merged = dict(DEFAULT_STATUS_MAP)
        merged.update(status_map or {})
        bad = {k: v for k, v in merged.items() if v not in OUR_STATUSES}
        if bad:
            raise ValueError(f"status_map values must be among {OUR_STATUSES}: {bad}")
        self.by_name = {k.casefold(): v for k, v in merged.items()}
        self.cat_by_id: dict[str, str] = {}
        self.cat_by_name: dict[str, str] = {}

    def learn(self, status: Any) -> None:
        if not isinstance(status, dict):
            return
        cat = (status.get("statusCategory") or {}).get("key")
        if cat not in _CATEGORY:
            return
        if status.get("id") is not None:
            self.cat_by_id[str(status["id"])] = cat
        if isinstance(status.get("name"), str):
            self.cat_by_name.setdefault(status["name"].casefold(), cat)

    def lookup(self, name: str | None, status_id: Any = None) -> str | None:
        if name and name.casefold() in self.by_name:
            return self.by_name[name.casefold()]
        cat = self.cat_by_id.get(str(status_id)) if status_id is not None else None
        if cat is None and name:
            cat = self.cat_by_name.get(name.casefold())
        if cat is None:
            return None
        if cat == "done" and name and name.casefold() == "resolved":
            return "resolved"
        return _CATEGORY[cat]

    def resolve(self, name: str | None, status_id: Any = None) -> str:
        return self.lookup(name, status_id) or f"unknown:{name or ''}"


def _retryable(exc: BaseException) -> tuple[bool, str | None]:
    if isinstance(exc, JIRAError) and exc.status_code in RETRY_STATUSES:
        headers = exc.response.headers if exc.response is not None else {}
        return True, headers.get("Retry-After")
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        return True, None
    return False, None


def _jira_message(exc: JIRAError, limit: int | None = 200) -> str:
    try:
        msg = parse_error_msg(exc.response) if exc.response is not None else (exc.text or "")
    except Exception:  # noqa: BLE001 - best effort only
        msg = ""
    return " ".join(msg.split())[:limit]


def _reason(exc: BaseException, policy: RetryPolicy) -> str:
    tries = f"after {policy.max_retries} retries"
    if isinstance(exc, JIRAError):
        text = f"HTTP {exc.status_code}" + (f" {tries}" if exc.status_code in RETRY_STATUSES else "")
        msg = _jira_message(exc)
        return f"{text}: {msg}" if msg else text
    if isinstance(exc, requests.Timeout):
        return f"timeout {tries}"
    if isinstance(exc, requests.ConnectionError):
        return f"{connection_reason(exc)} {tries}"
    if isinstance(exc, _Malformed):
        return f"malformed body: {exc}"
    if isinstance(exc, ValueError):
        return "malformed JSON body"
    return type(exc).__name__


_FETCH_ERRORS = (JIRAError, requests.RequestException, ValueError, _Malformed)


def _person(value: Any) -> str | None:
    """Login (DC ``name``), else e-mail, else Cloud ``accountId``, else display name."""
    attrs = ("name", "emailAddress", "accountId", "displayName")
    return next((value[a] for a in attrs if isinstance(value.get(a), str) and value[a]),
                None) if isinstance(value, dict) else None


class _JiraRun:
    """State of one fetch: client, retry policy, result being filled."""

    def __init__(self, client: JIRA, base: str, policy: RetryPolicy, result: TicketFetch,
                 statuses: _StatusIndex, start_field: str | None, end_field: str | None,
                 page_size: int) -> None:
        self.client, self.base, self.policy, self.result = client, base, policy, result
        self.statuses = statuses
        self.start_field, self.end_field = start_field, end_field
        self.page_size = max(1, page_size)
        self.cloud = False
        self.pending: list[tuple[dict, Any, list[dict]]] = []
        self.seen: set[str] = set()
        self.fields = ["summary", "status", "created", "resolutiondate", "assignee", "reporter",
                       "components"] + [f for f in (start_field, end_field) if f]
        keep_raw_bodies(client._session, result.raw, "jira")  # noqa: SLF001

    def call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return retry_call(fn, policy=self.policy, retryable=_retryable, what=f"jira {what}")
        except JIRAError as exc:
            if exc.status_code == 401:
                raise TicketFetchError(
                    f"Jira at {self.base} rejected the credentials (HTTP 401); check "
                    "PAMCORR_JIRA_USER / PAMCORR_JIRA_TOKEN") from None
            raise

    def detect(self, flavour: str | None) -> None:
        if flavour is None:
            try:
                info = self.call(self.client.server_info, "serverInfo")
            except _FETCH_ERRORS as exc:
                hint = ("" if isinstance(exc, requests.ConnectionError) else
                        "; if the server hides it, pass --flavour cloud or datacenter")
                raise TicketFetchError(f"could not read serverInfo from {self.base} "
                                       f"({_reason(exc, self.policy)}){hint}") from None
            deployment = info.get("deploymentType") if isinstance(info, dict) else None
            flavour = "cloud" if deployment == "Cloud" else "datacenter"
        self.cloud = flavour == "cloud"
        # the library decides Cloud-only calls from this public attribute
        self.client.deploymentType = "Cloud" if self.cloud else "Server"

    def search(self, jql: str) -> list[dict]:
        issues: list[dict] = []
        token: str | None = None
        start = 0
        for _ in range(_MAX_PAGES):
            if self.cloud:
                page = self.call(lambda token=token: self.client.enhanced_search_issues(
                    jql, nextPageToken=token, maxResults=self.page_size, fields=list(self.fields),
                    expand="changelog", json_result=True), "search/jql")
            else:
                page = self.call(lambda start=start: self.client.search_issues(
                    jql, startAt=start, maxResults=self.page_size, validate_query=False,
                    fields=list(self.fields), expand="changelog", json_result=True), "search")
            got = page.get("issues") if isinstance(page, dict) else None
            if not isinstance(got, list) or not all(
                    isinstance(i, dict) and isinstance(i.get("key"), str) and isinstance(i.get("fields"), dict)
                    for i in got):
                raise _Malformed("search page without a proper 'issues' list")
            issues.extend(got)
            if self.cloud:
                token, previous = page.get("nextPageToken"), token
                if not got or not token or page.get("isLast") is True:
                    return issues
                if token == previous:
                    raise _Malformed("nextPageToken did not advance")
            else:
                start += len(got)
                total = page.get("total")
                if not got or (isinstance(total, int) and start >= total) or (
                        not isinstance(total, int) and len(got) < self.page_size):
                    return issues
        raise _Malformed("too many pages")

    def fetch_keys(self, keys: list[str]) -> None:
        try:
            issues = self.search(f"key in ({', '.join(keys)}) ORDER BY key ASC")
        except _FETCH_ERRORS as exc:
            if not (isinstance(exc, JIRAError) and exc.status_code == 400):
                return self._fail(keys, _reason(exc, self.policy))
            named = _NOT_EXIST_RE.findall(_jira_message(exc, None))
            gone = [k for k in keys if k in named]  # strict JQL validation names unknown keys
            rest = [k for k in keys if k not in gone]
            self.result.missing.extend(gone)
            if gone and rest:
                self.fetch_keys(rest)
            elif not gone and len(keys) > 1:  # isolate the key the server objects to
                for key in keys:
                    self.fetch_keys([key])
            elif not gone:
                self._fail(keys, _reason(exc, self.policy))
            return None
        for issue in issues:
            if issue["key"] not in keys:
                LOG.warning("jira returned %s which was not asked for; ignored", issue["key"])
                continue
            self.add_issue(issue)
        self.result.missing.extend(k for k in keys if k not in self.seen)

    def fetch_jql(self, jql: str) -> None:
        try:
            for issue in self.search(jql):
                self.add_issue(issue)
        except _FETCH_ERRORS as exc:
            self._fail(["jql"], _reason(exc, self.policy))

    def _fail(self, refs: list[str], reason: str) -> None:
        self.result.failed.update(dict.fromkeys(refs, reason))
        self.seen.update(refs)

    def add_issue(self, issue: dict) -> None:
        key, fields = issue["key"], issue["fields"]
        if not is_jira_key(key):  # JQL mode: keys outside the strict pattern are reported, not used
            if key not in self.result.invalid:
                self.result.invalid.append(key)
            return
        if key in self.seen:
            return
        self.seen.add(key)
        try:
            histories = self.full_changelog(key, issue.get("changelog"))
        except _FETCH_ERRORS as exc:
            self.result.failed[key] = f"history incomplete: {_reason(exc, self.policy)}"
            return
        self.statuses.learn(fields.get("status"))
        ticket = {
            "ticket_id": key, "status": None,
            "opened": parse_jira_time(fields.get("created")),
            "closed": parse_jira_time(fields.get("resolutiondate")),
            "planned_start": parse_jira_time(fields.get(self.start_field)) if self.start_field else None,
            "planned_end": (parse_jira_time(fields.get(self.end_field), end_of_day=True)
                            if self.end_field else None),
            "work_start": None, "work_end": None,
            "assignee": _person(fields.get("assignee")), "reporter": _person(fields.get("reporter")),
            "title": fields.get("summary") if isinstance(fields.get("summary"), str) else None,
            "components": [c["name"] for c in fields.get("components") or []
                           if isinstance(c, dict) and isinstance(c.get("name"), str)],
            "system": "jira", "url": f"{self.base}/browse/{key}",
        }
        self.pending.append((ticket, fields.get("status"), _transitions(key, histories)))

    def full_changelog(self, key: str, changelog: Any) -> list[dict]:
        if isinstance(changelog, dict):
            histories = changelog.get("histories") or []
            if not isinstance(histories, list):
                raise _Malformed("changelog.histories is not a list")
            total = changelog.get("total")
            if not isinstance(total, int) or total <= len(histories):
                return histories
        try:
            return self.page_changelog(key)
        except JIRAError as exc:
            if exc.status_code != 404:
                raise
        # Server/DC without /changelog: the single-issue view is not truncated there
        raw = self.call(lambda: self.client.issue(key, fields="status", expand="changelog").raw,
                        f"issue {key}")
        changelog = raw.get("changelog") if isinstance(raw, dict) else None
        histories = changelog.get("histories") if isinstance(changelog, dict) else None
        if not isinstance(histories, list):
            raise _Malformed("issue without changelog")
        total = changelog.get("total")
        if isinstance(total, int) and total > len(histories):
            raise _Malformed(f"changelog truncated at {len(histories)} of {total}")
        return histories

    def page_changelog(self, key: str) -> list[dict]:
        values: list[dict] = []
        for _ in range(_MAX_PAGES):
            start = len(values)
            page = self.call(lambda start=start: self.client._get_json(  # noqa: SLF001 - no public method
                f"issue/{key}/changelog", params={"startAt": start, "maxResults": 100}),
                f"changelog {key}")
            got = page.get("values") if isinstance(page, dict) else None
            if not isinstance(got, list):
                raise _Malformed("changelog page without 'values'")
            values.extend(got)
            total = page.get("total")
            if not got or page.get("isLast") is True or (isinstance(total, int) and len(values) >= total):
                return values
        raise _Malformed("too many changelog pages")

    def finish(self) -> None:
        """Map statuses once every issue is known (names seen on any issue help)."""
        names = [(s.get("name"), s.get("id")) for _, s, _ in self.pending if isinstance(s, dict)]
        names += [(t["to"], t["to_id"]) for _, _, ts in self.pending for t in ts]
        names += [(t["from"], t["from_id"]) for _, _, ts in self.pending for t in ts[:1]]
        if any(self.statuses.lookup(n, i) is None for n, i in names):
            try:
                for status in self.call(self.client.statuses, "status"):
                    self.statuses.learn(getattr(status, "raw", None))
            except _FETCH_ERRORS as exc:
                LOG.warning("jira status list unavailable (%s)", _reason(exc, self.policy))
        for ticket, status, transitions in self.pending:
            current = status if isinstance(status, dict) else {}
            ticket["status"] = self.statuses.resolve(current.get("name"), current.get("id"))
            first = ((transitions[0]["from"], transitions[0]["from_id"]) if transitions
                     else (current.get("name"), current.get("id")))
            rows = [(ticket["opened"], self.statuses.resolve(*first))] if ticket["opened"] else []
            rows += [(t["ts"], self.statuses.resolve(t["to"], t["to_id"])) for t in transitions]
            self.result.history.extend({"ticket_id": ticket["ticket_id"], "ts": ts, "status": ours}
                                       for ts, ours in rows)
            # Jira has no actual-work fields: first in_progress .. last resolved/closed, if it ended
            starts = [ts for ts, ours in rows if ours == "in_progress"]
            ends = [ts for ts, ours in rows if ours in ("resolved", "closed")]
            if starts:
                ticket["work_start"] = starts[0]
                ended = rows[-1][1] in ("resolved", "closed") and ends[-1] >= starts[0]
                ticket["work_end"] = ends[-1] if ended else None
            self.result.tickets.append(ticket)


def _transitions(key: str, histories: list[Any]) -> list[dict]:
    """Status items of the changelog, oldest first."""
    out = []
    for history in histories:
        if not isinstance(history, dict):
            continue
        ts = parse_jira_time(history.get("created"))
        for item in history.get("items") or []:
            if not isinstance(item, dict) or (item.get("fieldId") or item.get("field")) != "status":
                continue
            if ts is None:
                LOG.warning("jira %s: status change without a usable timestamp; skipped", key)
                continue
            out.append({"ts": ts, "from": item.get("fromString"), "from_id": item.get("from"),
                        "to": item.get("toString"), "to_id": item.get("to")})
    out.sort(key=lambda t: t["ts"])
    return out
