"""pamcorr against the performance anchor (../shared/perf-anchor), measured in the same run.

    python bench/bench_anchor.py DATA [--anchor-python PY] [--findings OUT.parquet]
                                 [--compare BASE.parquet] [--profile] [--skip-anchor]

DATA is a folder written by the anchor's gen.py with `generic/` made by its to_generic.py.
Runs, each in its own process and back to back: the anchor (`ingest_json` then
`duckdb_asof_intkey`, with PY, a Python that has the anchor's requirements), then pamcorr
(ingest tickets, approvals, activity JSON lines into a fresh file store; correlate; the gap
report). Prints seconds and peak RSS of each and the ratio pamcorr / anchor.
--profile: time every SQL statement of the ingest and correlate, summed by stage.
--findings: write the findings (keyed by source and event_id) to Parquet;
--compare: count rows in either this run's findings or BASE's but not both (EXCEPT ALL both ways).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ANCHOR = Path(__file__).resolve().parents[2] / "shared" / "perf-anchor" / "baselines.py"

PEAK = """
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

# Times every statement the store's connection runs (bench/statement_times.py; the child
# processes run `python -c`, so the bench folder is put on their path).
PROFILE = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from statement_times import profiled, top
"""

INGEST = PEAK + PROFILE + """
import json, sys, time
from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.ingest import ingest
from correlate.store import Store
db, folder, profile = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
out, t0 = {}, time.perf_counter()
with Store(db) as s:
    if profile:
        profiled(s)
    for kind, name in (("tickets", "tickets.csv"), ("approvals", "approvals.csv"),
                       ("activity", "activity.jsonl")):
        t = time.perf_counter()
        (r,) = ingest(s, GenericConnector(), kind, [folder + "/" + name], Options())
        assert r.balanced and not r.quarantined, r
        out[kind] = round(time.perf_counter() - t, 2)
out["seconds"], out["rss_mib"] = time.perf_counter() - t0, peak_mib()
out["statements"] = top()
print(json.dumps(out))
"""

CORRELATE = PEAK + PROFILE + """
import json, sys, time
from pathlib import Path
from correlate.engine import correlate
from correlate.store import Store
from reports.gaps import write_gap_report
db, profile, findings, base, report = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4], sys.argv[5] == "1"
t = time.perf_counter()
with Store(db) as s:
    if profile:
        profiled(s)
    stages = {}
    run = correlate(s, timings=stages)
    out = {"seconds": time.perf_counter() - t, "rss_mib": peak_mib(), "statements": top(),
           "stages": stages}
    out["findings"] = s.scalar("SELECT count(*) FROM findings WHERE run_id = ?", [run])
    t = time.perf_counter()
    if report:
        write_gap_report(s, Path(db + ".html"), run)
    out["report_s"] = time.perf_counter() - t
    con = s.con._con if profile else s.con
    con.execute("CREATE TEMP VIEW keyed AS SELECT a.source, a.event_id, f.* EXCLUDE (run_id, act_id) "
                "FROM findings f JOIN activity a USING (act_id) WHERE f.run_id = " + str(int(run)))
    if findings != "-":
        con.execute("COPY (SELECT * FROM keyed) TO '" + findings.replace("'", "''") + "' (FORMAT parquet)")
    if base != "-":
        b = "read_parquet('" + base.replace("'", "''") + "')"
        out["only_now"] = con.execute(f"SELECT count(*) FROM (SELECT * FROM keyed EXCEPT ALL SELECT * FROM {b})").fetchall()[0][0]
        out["only_base"] = con.execute(f"SELECT count(*) FROM (SELECT * FROM {b} EXCEPT ALL SELECT * FROM keyed)").fetchall()[0][0]
print(json.dumps(out))
"""


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def child(argv: list[str]) -> dict:
    """The child's JSON line, with the CPU seconds it used (less sensitive than wall time to
    other jobs on a shared machine)."""
    before = _cpu()
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["cpu"] = _cpu() - before
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--anchor-python", default=sys.executable)
    ap.add_argument("--findings", default="-")
    ap.add_argument("--compare", default="-")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--skip-anchor", action="store_true")
    ap.add_argument("--no-report", action="store_true", help="do not time the gap report")
    ap.add_argument("--keep", help="build the store at this path and keep it")
    args = ap.parse_args()
    data = Path(args.data).resolve()
    anchor = anchor_cpu = 0.0
    if not args.skip_anchor:
        for method in ("ingest_json", "duckdb_asof_intkey"):
            r = child([args.anchor_python, str(ANCHOR), "--data", str(data), "--method", method,
                       "--no-verify"])
            anchor += r["seconds"]
            anchor_cpu += r["cpu"]
            print(f"anchor {method}: {r['seconds']:.2f} s ({r['cpu']:.2f} CPU-s), "
                  f"{r.get('peak_rss_mb', 0):.0f} MiB", flush=True)
    with tempfile.TemporaryDirectory(prefix="pamcorr-anchor-", dir=os.environ.get("TMPDIR")) as tmp:
        db = args.keep or str(Path(tmp) / "store.duckdb")
        for suffix in ("", ".wal"):
            Path(db + suffix).unlink(missing_ok=True)
        flag = "1" if args.profile else "0"
        ing = child([sys.executable, "-c", INGEST, db, str(data / "generic"), flag])
        print(f"pamcorr ingest: {ing['seconds']:.2f} s ({ing['cpu']:.2f} CPU-s; tickets {ing['tickets']}, approvals "
              f"{ing['approvals']}, activity {ing['activity']}), {ing['rss_mib']:.0f} MiB", flush=True)
        for k, v in ing["statements"]:
            print(f"    {v:7.2f}  {k}")
        cor = child([sys.executable, "-c", CORRELATE, db, flag, args.findings, args.compare,
                     "0" if args.no_report else "1"])
        print(f"pamcorr correlate: {cor['seconds']:.2f} s ({cor['cpu']:.2f} CPU-s incl. the "
              f"report), {cor['rss_mib']:.0f} MiB, "
              f"{cor['findings']} findings; gap report {cor['report_s']:.2f} s", flush=True)
        print("  stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in cor["stages"].items()))
        for k, v in cor["statements"]:
            print(f"    {v:7.2f}  {k}")
        if "only_now" in cor:
            print(f"findings vs {args.compare}: {cor['only_now']} rows only now, "
                  f"{cor['only_base']} only in the base (EXCEPT ALL both ways)")
    total = ing["seconds"] + cor["seconds"]
    print(f"pamcorr total {total:.2f} s" + (f"; anchor {anchor:.2f} s; ratio {total / anchor:.2f}"
                                           if anchor else ""))
    # What the anchor does: ingest, then verdicts written per action. Detections, approval
    # checks and hygiene are work the anchor has no counterpart for; shown apart, not hidden.
    like = ing["seconds"] + cor["stages"]["verdicts"] + cor["stages"]["store"]
    print(f"pamcorr ingest + verdicts stored {like:.2f} s" + (f"; ratio {like / anchor:.2f}"
                                                            if anchor else "")
          + f" (checks, hygiene, detections, commit: {total - like:.2f} s more)")
    if anchor and args.no_report and args.findings == args.compare == "-":   # CPU of that only
        print(f"CPU-s: pamcorr {ing['cpu'] + cor['cpu']:.2f}, anchor {anchor_cpu:.2f}, ratio "
              f"{(ing['cpu'] + cor['cpu']) / anchor_cpu:.2f}")


if __name__ == "__main__":
    main()
