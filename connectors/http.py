"""Shared HTTP plumbing for the ticket fetchers: sessions and bounded retries.

* :class:`RetryPolicy` says how often and how long to retry.  Retries happen
  on HTTP 429 and 5xx (500, 502, 503, 504) and on timeouts / connection
  errors.  A ``Retry-After`` header (delay-seconds or an HTTP-date) is
  honoured; otherwise the wait is exponential (``backoff * 2**attempt``).
  Every single wait is capped at ``max_wait`` and the number of retries at
  ``max_retries``, so a hostile or broken server cannot stall a run.
* :func:`send` performs one logical request with that policy and returns the
  last response (which may still be an error: the caller decides).
* :func:`retry_call` does the same for any callable (the ``jira`` library
  raises ``JIRAError`` instead of returning responses).
* :func:`configure_session` makes a ``requests`` session ignore ``~/.netrc``
  (``trust_env=False``; requests would otherwise put netrc credentials on
  requests without auth, and re-apply them after every redirect) while still
  honouring the ``*_PROXY``/``NO_PROXY`` and ``REQUESTS_CA_BUNDLE``
  environment variables explicitly.

Nothing here logs request headers, auth objects or bodies; URLs are logged
without user-info and query string.
"""

from __future__ import annotations

import email.utils
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from correlate.clock import now_utc

LOG = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retry settings; all times in seconds."""

    max_retries: int = 3
    backoff: float = 1.0
    max_wait: float = 60.0
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff < 0 or self.max_wait < 0 or self.timeout <= 0:
            raise ValueError("retry settings must be non-negative (timeout positive)")

    def wait(self, attempt: int, retry_after: str | None = None, now: datetime | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        hinted = parse_retry_after(retry_after, now)
        if hinted is None:
            hinted = self.backoff * (2 ** attempt)
        return max(0.0, min(hinted, self.max_wait))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: delay-seconds or an HTTP-date.

    Returns ``None`` when absent or unparseable; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or now_utc()
    return max(0.0, (when - now).total_seconds())


def safe_url(url: str) -> str:
    """``url`` without user-info and query string, for log messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def check_base_url(url: str) -> str:
    """Validate a server base URL and return it without a trailing slash.

    Credentials embedded in the URL are refused: they would end up in logs
    and in error messages.  Use the environment variables instead.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {safe_url(url)!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are not accepted; use the environment variables")
    return url.rstrip("/")


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>``; the token never appears in ``repr``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"


def make_auth(user: str | None, token: str | None) -> AuthBase | None:
    """Basic auth for user+token, bearer for a token alone, None for neither."""
    if user and not token:
        raise ValueError("a user name was given without a token")
    if user and token:
        return HTTPBasicAuth(user, token)
    if token:
        return BearerAuth(token)
    return None


def credentials_problem(user_var: str, token_var: str, system: str,
                        env: Mapping[str, str] | None = None) -> str | None:
    """Why the credentials in the environment cannot be used, or None: checked before any
    connection, so that a missing token never becomes an anonymous request. A token is always
    needed (alone: a bearer token; with the user: basic auth); blank values count as unset."""
    env = os.environ if env is None else env
    user, token = (env.get(user_var) or "").strip(), (env.get(token_var) or "").strip()
    if token:
        return None
    if user:
        return (f"{system}: {user_var} is set but {token_var} is empty or not set; set the "
                f"token (API token or personal access token) in the environment")
    return (f"{system}: no credentials: set {token_var} (an API token or personal access "
            f"token) and, for basic auth, {user_var} in the environment")


def configure_session(session: requests.Session, base_url: str) -> requests.Session:
    """Make ``session`` ignore ``~/.netrc`` but keep proxy / CA settings from the env."""
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    return session


def make_session(base_url: str, auth: AuthBase | None) -> requests.Session:
    """A new session for ``base_url`` with explicit ``auth`` and no netrc."""
    session = configure_session(requests.Session(), base_url)
    session.auth = auth
    session.headers["Accept"] = "application/json"
    return session


def keep_raw_bodies(session: requests.Session, sink: list[tuple[str, bytes]], label: str) -> None:
    """Append ``(name, body)`` of every response ``session`` receives to ``sink``.

    The name is ``"<label> <seq> <METHOD> <path>?<query> -> <status>"``; only
    response bodies are kept, never request headers (where the credentials are).
    """
    def keep(response: requests.Response, *args: object, **kwargs: object) -> None:
        parts = urlsplit(response.request.url or "")
        query = f"?{parts.query}" if parts.query else ""
        name = f"{label} {len(sink) + 1:04d} {response.request.method} {parts.path}{query}"
        sink.append((f"{name} -> {response.status_code}", response.content))

    session.hooks["response"].append(keep)


def _log_retry(what: str, attempt: int, policy: RetryPolicy, cause: str, delay: float) -> None:
    LOG.warning("%s: %s; retry %d/%d in %.2fs", what, cause, attempt + 1, policy.max_retries, delay)


def connection_reason(exc: BaseException) -> str:
    """`connection refused` when the server refused the connection (nothing listens there),
    else `connection failed`: the words a user can act on, not the exception's class."""
    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return "connection refused"
        cause = cause.__cause__ or cause.__context__ or (cause.args[0] if cause.args and
                                                         isinstance(cause.args[0], BaseException)
                                                         else None)
    return "connection failed"


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs,
) -> requests.Response:
    """One logical request with bounded retries; returns the last response.

    Raises ``requests.Timeout`` / ``requests.ConnectionError`` only when the
    last attempt failed that way.
    """
    what = f"{method} {safe_url(url)}"
    attempt = 0
    while True:
        try:
            response = session.request(method, url, timeout=policy.timeout, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            if attempt >= policy.max_retries:
                raise
            delay = policy.wait(attempt)
            _log_retry(what, attempt, policy, type(exc).__name__, delay)
        else:
            if response.status_code not in RETRY_STATUSES or attempt >= policy.max_retries:
                return response
            delay = policy.wait(attempt, response.headers.get("Retry-After"))
            _log_retry(what, attempt, policy, f"HTTP {response.status_code}", delay)
        sleep(delay)
        attempt += 1


def retry_call(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    retryable: Callable[[BaseException], tuple[bool, str | None]],
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` with bounded retries.

    ``retryable(exc)`` returns ``(retry?, retry_after_header)``.  The last
    exception is re-raised when retries are exhausted or not allowed.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified by the caller
            again, retry_after = retryable(exc)
            if not again or attempt >= policy.max_retries:
                raise
            delay = policy.wait(attempt, retry_after)
            _log_retry(what, attempt, policy, type(exc).__name__, delay)
        sleep(delay)
        attempt += 1
