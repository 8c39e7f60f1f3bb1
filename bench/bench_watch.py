"""Benchmark `pamcorr watch`: a writer appends generic activity JSON lines to a followed file
at a fixed rate; report p50/p99 latency from line written to alert on watch's stdout per alert
kind (verdict, detection), CPU, and RSS of the watch process sampled every --sample-every s.

    python bench/bench_watch.py --rate 1000 --rate 10000 --seconds 60

Most lines are approved work (an approval and ticket cover account `ok` on every target); a
share (--fail-share, 1 %) are unapproved actions of distinct accounts, so each is one verdict
alert (no rate-limit folding) carrying its write time; half of those also run `rm -rf /etc/x`,
a critical detection, measured apart. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from correlate.clock import now_utc


def _setup(folder: Path) -> tuple[Path, list[str]]:
    (folder / "tickets.jsonl").write_text(json.dumps(
        {"ticket_id": "CHG1", "status": "approved", "opened": "2020-01-01T00:00:00Z"}) + "\n")
    (folder / "approvals.jsonl").write_text(json.dumps(
        {"approval_id": "A1", "account": "ok", "target": "*", "start": "2020-01-01T00:00:00Z",
         "end": "2030-01-01T00:00:00Z", "ticket": "CHG1"}) + "\n")
    log = folder / "activity.jsonl"
    log.write_text("")
    return log, ["generic:tickets", str(folder / "tickets.jsonl"), "generic:approvals",
                 str(folder / "approvals.jsonl"), "generic:activity", str(log)]


def run(rate: int, seconds: float, fail_share: float, detections: bool,
        sample_every: float = 5.0, warmup: float = 15.0, cache_limit: str | None = None,
        store: str | None = None, startup: float = 4.0) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    log, pairs = _setup(folder)
    if store:                       # start from a copy of a store that already holds actions
        shutil.copy(store, folder / "w.duckdb")
    cmd = [sys.executable, "-c", "from correlate.cli import main; main()", "watch",
           "--db", str(folder / "w.duckdb"), "--poll", "0.2", "--debounce-ms", "20", *pairs]
    if not detections:
        cmd.append("--no-detections")
    if cache_limit:
        cmd += ["--cache-limit", cache_limit]
    err = open(folder / "watch.stderr", "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
    latencies, det_latencies = [], []

    def read():
        for line in proc.stdout:
            now = now_utc().timestamp()
            alert = json.loads(line)
            probe = re.search(r"probe (\d+\.\d+)", alert.get("detail") or "")
            if probe:
                (latencies if alert["rule"] == "verdict" else det_latencies).append(
                    (now - float(probe.group(1)), now))

    threading.Thread(target=read, daemon=True).start()
    ps = psutil.Process(proc.pid)
    time.sleep(startup)                             # start-up (rules parsed) is not measured
    samples, written, fail_every = [], 0, max(1, round(1 / fail_share))
    tick, start = 0.01, time.monotonic()
    cpu0 = sum(ps.cpu_times()[:2])
    next_sample = start
    with open(log, "a", encoding="utf-8") as fh:
        while time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * rate) - written
            if due > 0:
                now = now_utc().timestamp()
                ts = datetime.fromtimestamp(now, timezone.utc).isoformat().replace("+00:00", "Z")
                lines = []
                for i in range(written, written + due):
                    bad = i % fail_every == 0
                    lines.append(json.dumps({
                        "event_id": f"b{i}", "ts": ts,
                        "account": f"bad{i}" if bad else "ok", "target": f"host-{i % 50}",
                        "action": "exec", "detail": (("rm -rf /etc/x " if i % (2 * fail_every)
                                                      == 0 else "") + f"probe {now:.6f}")
                        if bad else "uptime"}))
                fh.write("\n".join(lines) + "\n")
                fh.flush()
                written += due
            if time.monotonic() >= next_sample:
                samples.append((round(time.monotonic() - start), ps.memory_info().rss >> 20))
                next_sample += sample_every
            time.sleep(tick)
    expected = (written + fail_every - 1) // fail_every
    deadline = time.monotonic() + 30
    while (len(latencies) < expected or detections and len(det_latencies) < expected // 2) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    elapsed = time.monotonic() - start
    cpu = sum(ps.cpu_times()[:2]) - cpu0
    samples.append((round(elapsed), ps.memory_info().rss >> 20))
    proc.terminate()
    proc.wait(30)
    lat, det = sorted(x for x, _ in latencies), sorted(x for x, _ in det_latencies)
    # p50 per sixth of the run: a rising series means watch fell behind the writer
    t0 = min((t for _, t in latencies), default=0)
    span = max(seconds / 6, 1)
    windows = {}
    for x, t in latencies:
        windows.setdefault(int((t - t0) // span), []).append(x)
    after = [m for t, m in samples if t >= warmup]
    return {"rate": rate, "seconds": seconds, "written": written,
            "verdict": {"expected": expected, "alerts": len(lat), **_quantiles(lat)},
            "detection": {"expected": expected // 2 if detections else 0, "alerts": len(det),
                          **_quantiles(det)},
            "verdict_p50_s_per_sixth": [round(statistics.median(v), 2)
                                        for _, v in sorted(windows.items())],
            "cpu_pct": round(100 * cpu / elapsed), "rss_mib": samples,
            f"rss_mib_after_{warmup:g}s": [min(after), max(after)] if after else None,
            "load_average": round(os.getloadavg()[0], 1), "detections": detections,
            "cache_limit": cache_limit, "store": store,
            "watch_stderr": str(folder / "watch.stderr")}


def _quantiles(lat: list[float]) -> dict:
    if not lat:
        return {}
    return {"p50_s": round(statistics.median(lat), 3),
            "p99_s": round(lat[max(int(len(lat) * 0.99) - 1, 0)], 3),
            "max_s": round(lat[-1], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, action="append", help="events/s (repeatable)")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--fail-share", type=float, default=0.01)
    ap.add_argument("--no-detections", action="store_true")
    ap.add_argument("--sample-every", type=float, default=5.0, help="RSS sample interval, s")
    ap.add_argument("--warmup", type=float, default=15.0,
                    help="RSS samples from this second on count as after warm-up")
    ap.add_argument("--cache-limit", default=None, help="watch --cache-limit (default: its own)")
    ap.add_argument("--store", default=None,
                    help="start watch on a copy of this store (e.g. one holding 5e6 actions)")
    ap.add_argument("--startup", type=float, default=4.0,
                    help="seconds watch gets to start before the writer begins")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)
    for rate in args.rate or [1000, 10000]:
        print(json.dumps(run(rate, args.seconds, args.fail_share, not args.no_detections,
                             args.sample_every, args.warmup, args.cache_limit, args.store,
                             args.startup)), flush=True)


if __name__ == "__main__":
    main()
