"""A small threaded HTTP server on 127.0.0.1 that answers like Jira and ServiceNow.

Used by the fetcher tests so the real ``jira`` / ``requests`` client code runs
over real HTTP.  It serves, from in-memory data set up by each test:

* Jira Cloud (``jira_flavour = "cloud"``): ``serverInfo`` with
  ``deploymentType: Cloud``, ``/search/jql`` paged by ``nextPageToken``,
  ``/issue/{key}/changelog`` paged by startAt/isLast, and HTTP 410 on the
  removed ``/search``;
* Jira Server/DC (``"datacenter"``): ``serverInfo`` with
  ``deploymentType: Server``, ``/search`` paged by ``startAt``/``total``,
  404 on ``/search/jql`` and ``/issue/{key}/changelog`` (as DC 9 does), and
  the complete changelog on ``/issue/{key}?expand=changelog``;
* ServiceNow Table API ``change_request``, ``sysapproval_approver`` and ``sys_audit`` with
  ``sysparm_query`` (``xIN``, ``x=v``, ``^`` AND, ``^OR``, ``^ORDERBY``), ``sysparm_fields``,
  ``sysparm_limit``/``sysparm_offset`` and ``X-Total-Count``; 404 "No Record
  found" when nothing matches.

Every request is logged (method, path, query, headers, time) in
``server.requests``.  ``server.script(path_regex, Reply(...), ...)`` queues
scripted answers (status, headers, raw body, delay) consumed in order by
matching requests, to simulate 429 / 5xx / timeouts / malformed bodies.
``server.auth`` (if set) is the only Authorization header accepted; others
get 401.  Response shapes follow the vendors' REST documentation.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from requests.structures import CaseInsensitiveDict


@dataclass
class Reply:
    """A scripted answer. ``status=None`` means: wait ``delay``, then answer normally."""

    status: int | None = None
    body: bytes | str | dict | list | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: CaseInsensitiveDict  # as sent; names case-insensitive
    at: float


CATEGORIES = {"new": (2, "To Do"), "indeterminate": (4, "In Progress"), "done": (3, "Done")}


def jira_status(name: str, sid: str, category: str | None) -> dict:
    """A Jira status object; ``category=None`` gives a Jira-5-style status without one."""
    status: dict[str, Any] = {"self": f"http://jira.invalid/rest/api/2/status/{sid}",
                              "description": "", "name": name, "id": sid}
    if category:
        cid, cname = CATEGORIES[category]
        status["statusCategory"] = {"id": cid, "key": category, "colorName": "blue-gray", "name": cname}
    return status


def jira_user(login: str, cloud: bool) -> dict:
    if cloud:
        return {"accountId": "5b10ac8d82e05b22cc7d" + login.encode().hex()[:4].rjust(4, "0"),
                "emailAddress": f"{login}@example.com", "displayName": login.title(), "active": True}
    return {"name": login, "key": login, "emailAddress": f"{login}@example.com",
            "displayName": login.title(), "active": True}


def jira_issue(key: str, status: dict, *, created: str, cloud: bool = True, summary: str = "change",
               assignee: str | None = "alice", reporter: str | None = "bob",
               resolutiondate: str | None = None, components: tuple[str, ...] = (),
               histories: list[dict] | None = None, **custom: Any) -> dict:
    """A REST v2 issue; ``histories`` is the complete changelog the server pages."""
    num = int(key.rsplit("-", 1)[1])
    fields = {"summary": summary, "status": status, "created": created,
              "resolutiondate": resolutiondate,
              "assignee": jira_user(assignee, cloud) if assignee else None,
              "reporter": jira_user(reporter, cloud) if reporter else None,
              "components": [{"id": str(10000 + i), "name": c} for i, c in enumerate(components)],
              **custom}
    return {"expand": "renderedFields,names,schema,operations,editmeta,changelog", "id": str(10000 + num),
            "self": f"http://jira.invalid/rest/api/2/issue/{10000 + num}", "key": key,
            "fields": fields, "_histories": list(histories or [])}


def jira_history(hid: int, created: str, from_status: dict | None, to_status: dict,
                 author: str = "alice") -> dict:
    """One changelog history with a status item (``from``/``to`` are status ids)."""
    return {"id": str(hid), "author": {"displayName": author}, "created": created, "items": [{
        "field": "status", "fieldtype": "jira", "fieldId": "status",
        "from": from_status["id"] if from_status else None,
        "fromString": from_status["name"] if from_status else None,
        "to": to_status["id"], "toString": to_status["name"]}]}


def _key_order(key: str) -> tuple[str, int, str]:
    project, num = key.rsplit("-", 1)
    return project, int(num) if num.isdigit() else 0, num


class TicketServer:
    """The server's state; see the module docstring."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.auth: str | None = None
        self.jira_flavour = "cloud"
        self.jira_issues: dict[str, dict] = {}
        self.jira_statuses: list[dict] = []
        self.jira_fields = [{"id": "summary", "name": "Summary", "clauseNames": ["summary"]},
                            {"id": "created", "name": "Created", "clauseNames": ["created", "createdDate"]}]
        self.strict_keys = True           # Cloud: unknown keys in `key in (...)` -> 400
        self.search_changelog_limit = 100  # histories embedded in search results
        self.changelog_page_max = 100
        self.snow_changes: list[dict] = []
        self.snow_approvals: list[dict] = []
        self.snow_audit: list[dict] = []   # sys_audit rows (documentkey, fieldname, oldvalue, ...)
        self._scripts: list[tuple[re.Pattern[str], deque[Reply]]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.ticket_server = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "TicketServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (also fine for a server never started)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, path_regex: str, *replies: Reply) -> None:
        self._scripts.append((re.compile(path_regex), deque(replies)))

    def add_issues(self, *issues: dict) -> None:
        for issue in issues:
            self.jira_issues[issue["key"]] = issue

    def paths(self) -> list[str]:
        return [s.path for s in self.requests]

    def urls(self) -> str:
        """Every request line seen (path + decoded query), for 'never sent' asserts."""
        return "\n".join(f"{s.path} {json.dumps(s.query)}" for s in self.requests)

    def next_reply(self, path: str) -> Reply | None:
        with self.lock:
            for pattern, queue in self._scripts:
                if queue and pattern.search(path):
                    return queue.popleft()
        return None

    # --- Jira ---------------------------------------------------------------
    def jira(self, rest: str, q: dict[str, list[str]]) -> tuple[int, Any]:
        cloud = self.jira_flavour == "cloud"
        arg = lambda name, default=None: (q.get(name) or [default])[0]  # noqa: E731
        if rest == "serverInfo":
            version = [1001, 0, 0] if cloud else [9, 12, 7]
            return 200, {"baseUrl": self.url, "version": ".".join(map(str, version)),
                         "versionNumbers": version, "deploymentType": "Cloud" if cloud else "Server",
                         "buildNumber": 100000, "serverTitle": "Jira"}
        if rest == "field":
            return 200, self.jira_fields
        if rest == "status":
            return 200, self.jira_statuses
        if rest == "search":
            if cloud:
                return 410, {"errorMessages": [
                    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                    "API. A full migration guideline is available at "
                    "https://developer.atlassian.com/changelog/#CHANGE-2046"], "errors": {}}
            strict = (arg("validateQuery", "true") or "").lower() != "false"
            return self._search(q, strict, cloud=False)
        if rest == "search/jql":
            if not cloud:
                return 404, {"message": f"null for uri: {self.url}/rest/api/2/search/jql", "status-code": 404}
            return self._search(q, self.strict_keys, cloud=True)
        m = re.fullmatch(r"issue/([^/]+)(/changelog)?", rest)
        if m:
            issue = self.jira_issues.get(m.group(1))
            if m.group(2) and not cloud:
                return 404, {"message": f"null for uri: {self.url}/rest/api/2/{rest}", "status-code": 404}
            if issue is None:
                return 404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."],
                             "errors": {}}
            hist = issue["_histories"]
            if m.group(2):
                start = int(arg("startAt", "0"))
                size = min(int(arg("maxResults", "100")), self.changelog_page_max)
                values = hist[start:start + size]
                return 200, {"self": f"{self.url}/rest/api/2/{rest}", "maxResults": size, "startAt": start,
                             "total": len(hist), "isLast": start + len(values) >= len(hist),
                             "values": values}
            return 200, self._render(issue, _csv(q.get("fields")), "changelog" in (arg("expand") or ""),
                                     limit=None)
        return 404, {"errorMessages": [f"no route {rest}"]}

    def _render(self, issue: dict, fields: list[str], changelog: bool, limit: int | None) -> dict:
        out = {k: v for k, v in issue.items() if not k.startswith("_")}
        if fields and "*all" not in fields:
            out["fields"] = {k: v for k, v in issue["fields"].items() if k in fields}
        if changelog:
            hist = issue["_histories"]
            shown = hist if limit is None else hist[:limit]
            out["changelog"] = {"startAt": 0, "maxResults": len(shown), "total": len(hist), "histories": shown}
        return out

    def _search(self, q: dict[str, list[str]], strict: bool, cloud: bool) -> tuple[int, Any]:
        jql = (q.get("jql") or [""])[0]
        m = re.match(r"\s*key\s+in\s*\(([^)]*)\)", jql, re.IGNORECASE)
        p = re.match(r"\s*project\s*=\s*([A-Z][A-Z0-9_]*)", jql)
        if m:
            wanted = [k.strip() for k in m.group(1).split(",") if k.strip()]
            unknown = [k for k in wanted if k not in self.jira_issues]
            if unknown and strict:
                return 400, {"errorMessages": [f"An issue with key '{k}' does not exist for field 'key'."
                                               for k in unknown], "errors": {}}
            keys = [k for k in wanted if k in self.jira_issues]
        elif p:
            keys = [k for k in self.jira_issues if k.rsplit("-", 1)[0] == p.group(1)]
        else:
            return 400, {"errorMessages": [f"Error in the JQL Query: {jql!r}"], "errors": {}}
        keys.sort(key=_key_order)
        size = int((q.get("maxResults") or ["50"])[0])
        if cloud:
            token = (q.get("nextPageToken") or [None])[0]
            start = int(base64.b64decode(token).decode()) if token else 0
        else:
            start = int((q.get("startAt") or ["0"])[0])
        expand = "changelog" in ",".join(q.get("expand") or [])
        fields = _csv(q.get("fields"))
        issues = [self._render(self.jira_issues[k], fields, expand, self.search_changelog_limit)
                  for k in keys[start:start + size]]
        if cloud:
            body: dict[str, Any] = {"issues": issues, "isLast": start + size >= len(keys)}
            if not body["isLast"]:
                body["nextPageToken"] = base64.b64encode(str(start + size).encode()).decode()
            return 200, body
        return 200, {"expand": "schema,names", "startAt": start, "maxResults": size,
                     "total": len(keys), "issues": issues}

    # --- ServiceNow ---------------------------------------------------------
    def snow(self, table: str, q: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        rows = {"change_request": self.snow_changes, "sysapproval_approver": self.snow_approvals,
                "sys_audit": self.snow_audit}.get(table)
        if rows is None:
            return 400, {"error": {"message": "Invalid table", "detail": table}, "status": "failure"}, {}
        query = (q.get("sysparm_query") or [""])[0]
        # An encoded query: terms joined by ^ (AND) or ^OR (OR with the term before), each
        # `nameINa,b` or `name=value`, and a final ^ORDERBYfield.
        groups: list[list[tuple[str, set[str]]]] = []
        order = None
        for term in query.split("^"):
            if term.startswith("ORDERBY"):
                order = term[len("ORDERBY"):]
                continue
            is_or = term.startswith("OR")
            term = term[2:] if is_or else term
            m = re.fullmatch(r"([a-z_.]+)(IN|=)(.*)", term)
            if not m:
                if term:
                    return 400, {"error": {"message": f"unsupported query {term}"}, "status": "failure"}, {}
                continue
            cond = (m.group(1), set(m.group(3).split(",")) if m.group(2) == "IN" else {m.group(3)})
            if is_or and groups:
                groups[-1].append(cond)
            else:
                groups.append([cond])
        hits = [r for r in rows
                if all(any(str(r.get(n, "")) in vals for n, vals in g) for g in groups)]
        if order:
            hits.sort(key=lambda r: str(r.get(order, "")))
        if not hits:
            return 404, {"error": {"message": "No Record found", "detail": "Record doesn't exist or ACL "
                                   "restricts the record retrieval"}, "status": "failure"}, {}
        offset = int((q.get("sysparm_offset") or ["0"])[0])
        limit = int((q.get("sysparm_limit") or ["10000"])[0])
        wanted = _csv(q.get("sysparm_fields"))
        page = [{k: r.get(k, "") for k in wanted} if wanted else dict(r) for r in hits[offset:offset + limit]]
        return 200, {"result": page}, {"X-Total-Count": str(len(hits))}


def _csv(values: list[str] | None) -> list[str]:
    return [v for item in values or [] for v in item.split(",") if v]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        server: TicketServer = self.server.ticket_server  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        with server.lock:
            server.requests.append(Seen("GET", parts.path, query, CaseInsensitiveDict(self.headers.items()),
                                        time.monotonic()))
        reply = server.next_reply(parts.path)
        if reply is not None and reply.delay:
            time.sleep(reply.delay)
        if reply is not None and reply.status is not None:
            return self._send(reply.status, reply.body, reply.headers)
        if server.auth is not None and self.headers.get("Authorization") != server.auth:
            return self._send(401, {"errorMessages": ["You are not authenticated. Authentication required "
                                                      "to perform this operation."], "errors": {}})
        m = re.fullmatch(r"/rest/api/[23]/(.+)", parts.path)
        if m:
            status, body = server.jira(m.group(1), query)
            return self._send(status, body)
        m = re.fullmatch(r"/api/now/table/(\w+)", parts.path)
        if m:
            status, body, headers = server.snow(m.group(1), query)
            return self._send(status, body, headers)
        self._send(404, {"error": "not found"})

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body or b""
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)


@pytest.fixture
def ticket_server() -> Iterator[TicketServer]:
    """A started :class:`TicketServer` on 127.0.0.1 and a random port."""
    server = TicketServer().start()
    try:
        yield server
    finally:
        server.stop()
