"""Where alerts go: JSON lines on stdout, a webhook (generic JSON or a Slack body), syslog
(RFC 5424). A sink acknowledges each alert it delivered (or wrote to the dead-letter file); the
loop records acknowledgements in the store, so an alert not acknowledged is offered again,
after a restart too (at least once; the alert id and version let a receiver drop a repeat).
"""

from __future__ import annotations

import json
import queue
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from correlate.clock import now_utc
from correlate.watch.alerts import json_line, slack_body, syslog_5424


class Sink:
    """Offer alerts with `offer`; collect (alert_id, version, outcome) with `acks`."""

    name = "sink"

    def offer(self, alerts: list[dict]) -> None:
        raise NotImplementedError

    def acks(self) -> list[tuple[str, int, str]]:
        return []

    def busy(self) -> bool:
        return False

    def close(self) -> None:
        pass


class StdoutSink(Sink):
    """JSON lines, flushed before they are acknowledged."""

    name = "stdout"

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self._acks = []

    def offer(self, alerts: list[dict]) -> None:
        if not alerts:
            return
        self.stream.write("".join(json_line(a) + "\n" for a in alerts))
        self.stream.flush()
        self._acks += [(a["alert_id"], a["version"], "delivered") for a in alerts]

    def acks(self):
        out, self._acks = self._acks, []
        return out


class SyslogSink(Sink):
    """RFC 5424 over UDP (`syslog://host:port`) or TCP with octet counting (`syslog+tcp://`)."""

    def __init__(self, url: str, host_name: str | None = None):
        parts = urlsplit(url)
        self.tcp = parts.scheme == "syslog+tcp"
        self.addr = (parts.hostname or "127.0.0.1", parts.port or 514)
        self.name = url
        self.host_name = host_name or socket.gethostname()
        self.sock = None
        self._acks = []

    def _connect(self):
        if self.sock is None:
            if self.tcp:
                self.sock = socket.create_connection(self.addr, timeout=5)
            else:
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return self.sock

    def offer(self, alerts: list[dict]) -> None:
        for a in alerts:
            msg = syslog_5424(a, self.host_name, now_utc())
            try:
                sock = self._connect()
                if self.tcp:
                    sock.sendall(str(len(msg)).encode() + b" " + msg)
                else:
                    sock.sendto(msg, self.addr)
            except OSError:
                if self.sock:
                    self.sock.close()
                self.sock = None
                return          # not acknowledged: offered again next round
            self._acks.append((a["alert_id"], a["version"], "delivered"))

    def acks(self):
        out, self._acks = self._acks, []
        return out

    def close(self) -> None:
        if self.sock:
            self.sock.close()


class WebhookSink(Sink):
    """POST each alert (JSON, or a Slack-compatible body with `slack=True`) from a thread.

    A bounded queue holds what waits; what does not fit stays pending in the store and is
    offered again. A failed POST (connection error, timeout, HTTP 5xx or 429) is retried with
    exponential backoff; one still failing after `max_attempts` or `max_age_s` goes to the
    dead-letter file (one JSON line each, with the last error) and counts as handled. Other
    4xx answers are not retried: dead-letter at once."""

    def __init__(self, url: str, slack: bool = False, dead_letter: Path | None = None,
                 queue_size: int = 1000, max_attempts: int = 8, max_age_s: float = 300,
                 backoff_s: float = 0.5, max_backoff_s: float = 30, timeout_s: float = 10):
        self.url, self.slack, self.name = url, slack, ("slack:" if slack else "webhook:") + url
        self.dead_letter = Path(dead_letter) if dead_letter else None
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.max_attempts, self.max_age_s = max_attempts, max_age_s
        self.backoff_s, self.max_backoff_s, self.timeout_s = backoff_s, max_backoff_s, timeout_s
        self.inflight: set[tuple[str, int]] = set()
        self.lock = threading.Lock()
        self._acks: list = []
        self.stop = threading.Event()
        self.session = requests.Session()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def offer(self, alerts: list[dict]) -> None:
        for a in alerts:
            key = (a["alert_id"], a["version"])
            with self.lock:
                if key in self.inflight:
                    continue
            try:
                self.queue.put_nowait(a)
            except queue.Full:
                return            # stays pending in the store
            with self.lock:
                self.inflight.add(key)

    def busy(self) -> bool:
        with self.lock:
            return bool(self.inflight)

    def acks(self):
        # an alert stays in flight until its acknowledgement is collected (and then recorded
        # by the loop), so it cannot be offered again in between
        with self.lock:
            out, self._acks = self._acks, []
            self.inflight.difference_update((a, v) for a, v, _ in out)
        return out

    def _post(self, alert: dict) -> str | None:
        """None when delivered, else the error; raises _Permanent for a 4xx refusal."""
        body = slack_body(alert) if self.slack else alert
        try:
            r = self.session.post(self.url, data=json.dumps(body).encode(),
                                  headers={"Content-Type": "application/json"},
                                  timeout=self.timeout_s)
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"
        if r.status_code < 300:
            return None
        if r.status_code >= 500 or r.status_code == 429:
            return f"HTTP {r.status_code}"
        raise _Permanent(f"HTTP {r.status_code}")

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                alert = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            first, attempt, error, outcome = time.monotonic(), 0, None, "delivered"
            while not self.stop.is_set():
                attempt += 1
                try:
                    error = self._post(alert)
                except _Permanent as exc:
                    error, outcome = str(exc), "dead"
                    break
                if error is None:
                    break
                if attempt >= self.max_attempts or time.monotonic() - first > self.max_age_s:
                    outcome = "dead"
                    break
                self.stop.wait(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))
            if self.stop.is_set() and outcome == "delivered" and error is not None:
                return            # stopping mid-retry: not acknowledged, pending in the store
            if outcome == "dead":
                self._dead(alert, error, attempt)
            key = (alert["alert_id"], alert["version"])
            with self.lock:
                self._acks.append((*key, outcome))

    def _dead(self, alert: dict, error: str, attempts: int) -> None:
        if self.dead_letter is None:
            return
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dead_letter, "a", encoding="utf-8") as fh:
            fh.write(json_line({"sink": self.name, "error": error, "attempts": attempts,
                                "at": now_utc().isoformat(), "alert": alert}) + "\n")
            fh.flush()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)


class _Permanent(Exception):
    pass


def make_sink(spec: str, dead_letter: Path | None, **webhook) -> Sink:
    """`stdout`, `http(s)://...` (generic JSON), `slack+https://...` (Slack body),
    `syslog://host:port` (UDP) or `syslog+tcp://host:port`."""
    if spec in ("stdout", "-"):
        return StdoutSink()
    if spec.startswith(("http://", "https://")):
        return WebhookSink(spec, dead_letter=dead_letter, **webhook)
    if spec.startswith(("slack+http://", "slack+https://")):
        return WebhookSink(spec.split("+", 1)[1], slack=True, dead_letter=dead_letter, **webhook)
    if spec.startswith(("syslog://", "syslog+tcp://")):
        return SyslogSink(spec)
    raise ValueError(f"unknown alert sink {spec!r}: use stdout, http(s)://URL, "
                     f"slack+https://URL, syslog://HOST:PORT or syslog+tcp://HOST:PORT")
