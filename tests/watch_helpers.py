"""Run `pamcorr watch` as a real process and read its JSON-line alerts as they come."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

FAST = ["--poll", "0.1", "--debounce-ms", "20", "--no-detections"]


def event(n: int, account: str | None = None, ts: str = "2026-12-06T00:00:00Z",
          detail: str = "id", target: str = "web-1") -> str:
    return json.dumps({"event_id": f"e{n}", "ts": ts, "account": account or f"user{n}",
                       "target": target, "action": "exec", "detail": detail}) + "\n"


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()


class Watch:
    """A watch subprocess; `alerts` fills from its stdout, `stderr` from its stderr."""

    def __init__(self, db: Path, *args: str, stdin=None, fast: bool = True):
        cmd = [sys.executable, "-c", "from correlate.cli import main; main()", "watch",
               "--db", str(db), *(FAST if fast else []), *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.PIPE if stdin is not None else None,
                                     env=env)
        if stdin is not None:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()
        self.alerts: list[dict] = []
        self.raw: list[bytes] = []
        self.stderr: list[str] = []
        self._threads = [threading.Thread(target=self._out, daemon=True),
                         threading.Thread(target=self._err, daemon=True)]
        for t in self._threads:
            t.start()

    def _out(self):
        for line in self.proc.stdout:
            self.raw.append(line)
            self.alerts.append(json.loads(line))

    def _err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace"))

    def wait_for(self, predicate, timeout: float = 12.0, what: str = "condition"):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(self):
                return
            if self.proc.poll() is not None and not predicate(self):
                time.sleep(0.2)
                if predicate(self):
                    return
                raise AssertionError(f"watch exited ({self.proc.returncode}) before {what}:\n"
                                     + "".join(self.stderr))
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; alerts: {self.alerts}\n"
                             + "".join(self.stderr))

    def events(self, state: str = "open") -> set[str]:
        return {a["event_id"] for a in self.alerts if a.get("state") == state}

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        for t in self._threads:
            t.join(5)
