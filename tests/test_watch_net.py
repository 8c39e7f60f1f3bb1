"""`pamcorr watch` over sockets: a syslog client over TCP and UDP, a webhook that fails and then
recovers, one that never does (dead letter), a Slack body, syslog out; framing and escaping."""

from __future__ import annotations

import json
import re
import socket
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from correlate.watch.alerts import json_line, slack_body, syslog_5424
from correlate.watch.sources import split_frames
from tests.watch_helpers import Watch, event

SUDO = ("alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/cat /etc/shadow{n}")


class Hook:
    """A local webhook: answers 500 to the first `fail` requests, then 200 (or always 500)."""

    def __init__(self, fail: int = 0):
        self.fail, self.calls, self.bodies = fail, 0, []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.calls += 1
                ok = hook.fail >= 0 and hook.calls > hook.fail
                if ok:
                    hook.bodies.append(json.loads(body))
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def _listening(w: Watch) -> int:
    w.wait_for(lambda w: any("syslog on" in line for line in w.stderr), what="the receiver")
    line = next(line for line in w.stderr if "syslog on" in line)
    return int(re.search(r":(\d+) ", line).group(1))


def test_syslog_over_tcp_and_udp_is_judged_and_alerted(tmp_path):
    w = Watch(tmp_path / "w.duckdb", "--listen", "127.0.0.1:0", "--tz", "UTC", "--year", "2026")
    try:
        port = _listening(w)
        rfc5424 = f"<86>1 2026-12-06T10:00:00Z web-2 sudo - - - {SUDO.format(n=1)}".encode()
        rfc3164 = f"<86>Dec  6 10:00:01 web-3 sudo: {SUDO.format(n=2)}".encode()
        newline = f"<86>Dec  6 10:00:02 web-4 sudo: {SUDO.format(n=3)}\n".encode()
        with socket.create_connection(("127.0.0.1", port)) as tcp:
            # octet counting, then newline framing, on one connection
            tcp.sendall(str(len(rfc5424)).encode() + b" " + rfc5424 + newline)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(rfc3164, ("127.0.0.1", port))
        w.wait_for(lambda w: len(w.alerts) >= 3, what="three alerts")
    finally:
        w.stop()
    assert sorted(a["target"] for a in w.alerts) == ["web-2", "web-3", "web-4"]
    assert {a["action"] for a in w.alerts} == {"sudo.command"}


def test_webhook_that_fails_then_recovers_gets_every_alert_once(tmp_path):
    hook = Hook(fail=3)
    log = tmp_path / "act.jsonl"
    log.write_text(event(1) + event(2))
    w = Watch(tmp_path / "w.duckdb", "generic:activity", str(log), "--alert", hook.url,
              "--webhook-backoff", "0.05")
    try:
        w.wait_for(lambda w: len(hook.bodies) >= 2, what="delivery after the failures")
    finally:
        w.stop()
        hook.close()
    assert hook.calls == 5
    assert sorted(b["event_id"] for b in hook.bodies) == ["e1", "e2"]
    assert not (tmp_path / "w.duckdb.watch" / "dead-letter.jsonl").exists()


def test_webhook_that_stays_down_sends_to_the_dead_letter_file(tmp_path):
    hook = Hook(fail=-1)
    log = tmp_path / "act.jsonl"
    log.write_text(event(1))
    dead = tmp_path / "dead.jsonl"
    w = Watch(tmp_path / "w.duckdb", "generic:activity", str(log), "--alert", hook.url,
              "--webhook-backoff", "0.01", "--webhook-attempts", "3", "--dead-letter", str(dead))
    try:
        w.wait_for(lambda w: dead.exists() and dead.read_text().strip(), what="the dead letter")
    finally:
        w.stop()
        hook.close()
    (entry,) = [json.loads(line) for line in dead.read_text().splitlines()]
    assert entry["attempts"] == 3 and entry["error"] == "HTTP 500"
    assert entry["alert"]["event_id"] == "e1"


def test_slack_body_escapes_mrkdwn_and_syslog_out_escapes_control_characters(tmp_path):
    hook = Hook()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    log = tmp_path / "act.jsonl"
    log.write_text(event(1, detail="echo <!channel> & <https://evil|click>\nforged line"))
    w = Watch(tmp_path / "w.duckdb", "generic:activity", str(log),
              "--alert", "slack+" + hook.url,
              "--alert", f"syslog://127.0.0.1:{receiver.getsockname()[1]}")
    try:
        w.wait_for(lambda w: hook.bodies, what="the Slack post")
        datagram = receiver.recv(65535)
    finally:
        w.stop()
        hook.close()
        receiver.close()
    text = hook.bodies[0]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in text
    assert b"\n" not in datagram and b"forged line" in datagram
    assert datagram.startswith(b"<83>1 ") and b'[pamcorr@32473 alert_id="' in datagram


def test_split_frames_reads_octet_counting_and_newlines_and_keeps_a_partial_frame():
    data = b"11 <13>1 hello" + b"<13>Dec  1 00:00:00 h x: y\n" + b"20 <13>1 cut"
    messages, rest = split_frames(data)
    assert messages == [b"<13>1 hello", b"<13>Dec  1 00:00:00 h x: y"]
    assert rest == b"20 <13>1 cut"


def test_sink_texts_escape_hostile_values():
    alert = {"alert_id": 'a"]x', "version": 1, "state": "open", "rule": "verdict",
             "severity": "high", "message": "x\u202ey\n<@U1>"}
    line = json_line(alert)
    assert "\u202e" not in line and json.loads(line) == alert
    sd = syslog_5424(alert, "h", datetime(2026, 1, 1, tzinfo=timezone.utc)).decode()
    assert 'alert_id="a\\"\\]x"' in sd and "\n" not in sd and "\u202e" not in sd
    assert "&lt;@U1&gt;" in slack_body(alert)["text"]
