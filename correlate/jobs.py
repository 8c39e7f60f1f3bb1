"""The weekly compliance run: ingest what is new, correlate one ISO week, compare with the previous
week, check every source sent something, and write the gap report and evidence bundle."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from connectors.base import Options
from connectors.registry import get_connector
from correlate import queries
from correlate.clock import now_utc
from correlate.config import Settings
from correlate.engine import correlate
from correlate.errors import InputError, PamcorrError
from correlate.exceptions import exception_lines, run_exceptions
from correlate.hygiene import severities, summary_line
from correlate.ingest import expand_paths, ingest
from correlate.source_coverage import SourceCoverage, source_coverage
from correlate.store import Store

WEEK_RE = re.compile(r"(\d{4})-W(\d{2})")

PREVIOUS_RUNS_SQL = """
SELECT run_id, period_start, period_end, parameters FROM runs
WHERE finished IS NOT NULL AND run_id <> ? AND period_end <= ?
ORDER BY period_end DESC, run_id DESC
"""

# One row per issue: the same account failing the same way on the same target. n: its FAIL
# actions no accepted exception covers; excepted: those one covers (an exception matches the
# whole key, so an issue is failing or excepted, counted apart).
ISSUES_SQL = """
SELECT lower(a.account) AS account_norm, lower(a.target) AS target_norm, f.verdict,
       min(a.account) AS account, min(a.target) AS target,
       count(*) FILTER (WHERE e.act_id IS NULL) AS n, count(e.act_id) AS excepted,
       min(a.ts) AS first, max(a.ts) AS last
FROM findings f JOIN activity a USING (act_id)
LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id
WHERE f.run_id = ? AND f.status = 'FAIL'
GROUP BY ALL
"""

# (account, target) pairs that acted in a run at all, failing or not.
ACTIVE_PAIRS_SQL = """
SELECT DISTINCT lower(a.account), lower(a.target)
FROM findings f JOIN activity a USING (act_id) WHERE f.run_id = ?
"""

# One row per detection key: the same rule firing for the same account on the same target.
# review: the worst of its rows (FAIL, then needs_review, then MUTED).
DETECTION_KEYS_SQL = """
SELECT lower(a.account) AS account_norm, lower(a.target) AS target_norm, d.rule_id,
       min(a.account) AS account, min(a.target) AS target, any_value(r.title) AS title,
       any_value(r.severity) AS severity, count(*) AS n,
       ['FAIL', 'needs_review', 'MUTED'][min(CASE d.review WHEN 'FAIL' THEN 1
                                                           WHEN 'needs_review' THEN 2
                                                           ELSE 3 END)] AS review
FROM detections d JOIN detection_rules r ON r.run_id = d.run_id AND r.rule_id = d.rule_id
JOIN activity a USING (act_id)
WHERE d.run_id = ?
GROUP BY ALL
"""

COVERAGE_SQL = """
SELECT source,
       count(*) FILTER (WHERE ts >= $start AND ts < $end) AS rows,
       max(ts) FILTER (WHERE ts >= $start AND ts < $end) AS last,
       max(ts) FILTER (WHERE ts < $start) AS last_before
FROM activity GROUP BY source
"""


@dataclass(frozen=True)
class Week:
    """An ISO week in UTC: [start, end)."""

    label: str
    start: datetime
    end: datetime


def parse_week(label: str) -> Week:
    """'2026-W47' -> Monday 00:00 UTC .. next Monday 00:00 UTC."""
    m = WEEK_RE.fullmatch(label.strip())
    if not m:
        raise PamcorrError(f"week {label!r}: use the ISO form YYYY-Www, e.g. 2026-W47")
    try:
        day = datetime.strptime(f"{m.group(1)}-W{m.group(2)}-1", "%G-W%V-%u")
    except ValueError:
        raise PamcorrError(f"week {label!r} does not exist") from None
    start = day.replace(tzinfo=timezone.utc)
    if start.isocalendar()[:2] != (int(m.group(1)), int(m.group(2))):
        raise PamcorrError(f"week {label!r} does not exist")
    return Week(label.strip(), start, start + timedelta(days=7))


def week_of(day: datetime) -> Week:
    year, week, _ = day.isocalendar()
    return parse_week(f"{year}-W{week:02d}")


def last_full_week(now: datetime | None = None) -> Week:
    """The latest ISO week (UTC) that has ended by `now` (default: the clock)."""
    now = (now or now_utc()).astimezone(timezone.utc)
    return week_of(now - timedelta(days=7))


def issue_key(account: str, target: str, verdict: str) -> str:
    """Stable id of an issue across weekly runs: lower(account), lower(target), verdict."""
    text = "\x1f".join((account.lower(), target.lower(), verdict))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class SourceIngest:
    """What one `[[sources]]` entry brought in this run."""

    name: str
    connector: str
    new_files: int = 0
    skipped_files: int = 0
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    unmatched: list[str] = field(default_factory=list)
    not_read: list[str] = field(default_factory=list)   # hidden or non-UTF-8 names, said why


@dataclass
class Change:
    """One issue key compared with the previous weekly run."""

    state: str                    # new | still failing | resolved | not seen | excepted
    key: str
    account: str
    target: str
    verdict: str
    before: int                   # failing actions in the previous run (not excepted)
    now: int                      # failing actions in this run (not excepted)
    excepted: int = 0             # FAIL actions in this run an accepted exception covers


@dataclass
class DetectionChange:
    """One detection key (account, target, rule) compared with the previous weekly run."""

    state: str                    # new | still present | resolved | not seen
    key: str
    account: str
    target: str
    rule_id: str
    title: str
    severity: str
    review: str                   # worst review this week (else last week's)
    before: int                   # detections in the previous run
    now: int                      # detections in this run


@dataclass
class Coverage:
    """One activity source in the period. status PASS, WARN (went quiet) or FAIL (sent nothing)."""

    source: str
    rows: int
    last: datetime | None
    last_before: datetime | None
    status: str
    message: str


@dataclass
class WeeklySummary:
    """Everything the weekly sections of the bundle index and weekly.json show."""

    week: Week
    run_id: int
    config: str | None
    ingest: list[SourceIngest]
    tickets: str
    totals: list[dict]
    previous: dict | None         # {run_id, week, note} of the run compared with
    changes: list[Change]
    coverage: list[Coverage]
    # tickets judged by their current state only (state history unreadable), never silent
    tickets_without_history: list[str] = field(default_factory=list)
    detections: list[dict] = field(default_factory=list)     # [{severity, review, n}]
    detection_changes: list[DetectionChange] = field(default_factory=list)
    skipped_checks: list[str] = field(default_factory=list)   # ticket checks without their field
    # per configured source name, every kind (correlate/source_coverage.py)
    source_coverage: list[SourceCoverage] = field(default_factory=list)
    exceptions: list[dict] = field(default_factory=list)      # accepted exceptions of the run
    # approval hygiene per check: {check_id, severity, n, judged, not_judged, ...}
    hygiene: list[dict] = field(default_factory=list)
    integrity: list[dict] = field(default_factory=list)   # input-integrity findings (issue 20)

    def count(self, state: str) -> int:
        return sum(1 for c in self.changes if c.state == state)

    def detection_count(self, state: str) -> int:
        return sum(1 for c in self.detection_changes if c.state == state)

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=_iso) + "\n"


def _iso(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return str(value)


@dataclass
class WeeklyResult:
    """What `pamcorr run` prints from: the summary and where the bundle went."""

    summary: WeeklySummary
    out_dir: Path
    manifest_sha256: str


def ingest_sources(store: Store, settings: Settings, progress=None,
                   matched: dict | None = None) -> list[SourceIngest]:
    """Ingest every configured source; files already ingested (same sha256) are skipped.
    `matched` (when given) receives, per source (its index), the files its paths matched and
    their sha256s, for the coverage check."""
    from correlate.integrity.load import read_options, store_options
    plans = []
    for src in settings.sources:   # check every connector and option before touching the store
        plans.append((src, get_connector(src.connector),
                      Options(tz=src.tz, year=src.year),
                      read_options(src.options())))     # key and digest metadata files
    out, rejected = [], []
    for i, (src, connector, options, integrity_files) in enumerate(plans):
        store_options(store, *integrity_files)
        done = SourceIngest(src.name, src.connector)
        files = []
        for pattern in src.paths:
            try:
                files.extend(expand_paths([pattern], warn=done.not_read.append))
            except InputError:
                done.unmatched.append(pattern)
        shas: list[str] = []
        if matched is not None:
            matched[i] = ([str(f) for f in files], shas)
        digests = []
        if connector.name == "cloudtrail":     # digests and log hashes (correlate/integrity)
            from correlate.integrity.load import ingest_digests, split_digests
            digests, files = split_digests(files)
        if files:
            results = ingest(store, connector, src.kind, [str(f) for f in files], options,
                             progress=progress, reject=True)
            from correlate.integrity.load import after_ingest
            after_ingest(store, connector.name, files, options.extra, results)
        else:
            results = []
        if digests:
            results = results + ingest_digests(store, digests)
        if results:
            for r in results:
                shas.append(r.sha256)
                if r.skipped:
                    done.skipped_files += 1
                    continue
                if r.rejected:
                    rejected.append(f"{r.file}: no record accepted by source {src.name} "
                                    f"({src.connector}), {r.read} read, all quarantined; "
                                    + (f"this looks like {r.guess}" if r.guess else
                                       "is it the right connector and kind?")
                                    + "; not recorded as ingested")
                    continue
                done.new_files += 1
                done.read += r.read
                done.accepted += r.accepted
                done.quarantined += r.quarantined
        out.append(done)
    if rejected:    # the other files are stored; the week is not judged without these
        raise PamcorrError(" | ".join(rejected))
    return out


FETCHERS = {"jira": "connectors.jira_fetch", "servicenow": "connectors.servicenow_fetch"}


def fetch_tickets(store: Store, settings: Settings, week: Week) -> str:
    """Fetch the tickets the week's approvals cite when `[tickets]` is set; a one-line summary."""
    cfg = settings.tickets
    if cfg is None:
        return "tickets: not configured"
    try:
        fetcher = importlib.import_module(FETCHERS[cfg.system])
        keeper = importlib.import_module("correlate.fetch")
        from connectors.ticket_refs import TicketFetchError
    except ModuleNotFoundError:
        return f"tickets: fetching from {cfg.system} is not available in this build"
    refs = keeper.ticket_refs(store, week.start, week.end)
    try:
        if cfg.system == "jira":
            user, token = fetcher.jira_credentials_from_env()
            result = fetcher.fetch_jira(cfg.url, keys=refs, user=user, token=token,
                                        flavour=cfg.flavour, timeout=cfg.timeout,
                                        max_retries=cfg.max_retries)
        else:
            user, token = fetcher.servicenow_credentials_from_env()
            result = fetcher.fetch_servicenow(cfg.url, refs, user=user, token=token,
                                              timeout=cfg.timeout, max_retries=cfg.max_retries)
    except TicketFetchError as exc:
        raise PamcorrError(f"{cfg.system} at {cfg.url}: {exc}") from None
    s = keeper.store_fetch(store, result, cfg.system, cfg.url, asked=refs)
    line = (f"tickets: {cfg.system} fetched {s.fetched}, missing {s.missing}, failed {s.failed}, "
            f"invalid refs {s.invalid}")
    if s.failed and not s.fetched:
        raise PamcorrError(f"{line}: every ticket fetch from {cfg.url} failed; the week is not "
                           f"judged against tickets that could not be read")
    return line


def previous_weekly_run(store: Store, run_id: int, week: Week) -> dict | None:
    """The newest other weekly run whose period ended by this week's start."""
    for row in store.query_dicts(PREVIOUS_RUNS_SQL, [run_id, week.start]):
        params = json.loads(row["parameters"] or "{}")
        if params.get("job") == "weekly":
            return {"run_id": row["run_id"], "week": params.get("week"),
                    "note": queries.period_note(row, week.start, week.end, weekly=True)}
    return None


def compare_runs(store: Store, previous: int | None, current: int) -> list[Change]:
    """New, still failing, resolved and not seen issues by issue key (account, target, verdict).

    An issue that failed before is "resolved" only when the account acted on the target in this
    run and none of those actions failed that way; without any such action it is "not seen".
    Only FAIL actions no accepted exception covers count as failing: an issue an exception covers
    in this run is "excepted" (counted apart, never new or still failing); one covered in the
    previous run counts as not failing then.
    """
    def issues(run):
        if run is None:
            return {}, {}
        rows = store.query_dicts(ISSUES_SQL, [run])
        key = lambda r: (r["account_norm"], r["target_norm"], r["verdict"])  # noqa: E731
        return ({key(r): r for r in rows if r["n"]},
                {key(r): r for r in rows if r["excepted"] and not r["n"]})
    (before, _), (now, excepted) = issues(previous), issues(current)
    active = set(store.query(ACTIVE_PAIRS_SQL, [current])) if before else set()
    changes = []
    for k in sorted(set(before) | set(now) | set(excepted)):
        row = now.get(k) or excepted.get(k) or before[k]
        if k in now:
            state = "still failing" if k in before else "new"
        elif k in excepted:
            state = "excepted"
        else:
            state = "resolved" if (k[0], k[1]) in active else "not seen"
        changes.append(Change(state, issue_key(*k), row["account"], row["target"], k[2],
                              before[k]["n"] if k in before else 0, now[k]["n"] if k in now else 0,
                              excepted[k]["excepted"] if k in excepted else 0))
    order = {"new": 0, "still failing": 1, "resolved": 2, "not seen": 3, "excepted": 4}
    return sorted(changes, key=lambda c: (order[c.state], -c.now, -c.before, c.account,
                                          c.target, c.verdict))


def compare_detections(store: Store, previous: int | None,
                       current: int) -> list[DetectionChange]:
    """New, still present, resolved and not seen detections by key (account, target, rule_id).

    Like failing issues: a key seen before is "resolved" only when the account acted on the
    target in this run without that rule firing; with no such action at all it is "not seen".
    Muted detections are compared too (their review says MUTED).
    """
    def keys(run):
        if run is None:
            return {}
        return {(r["account_norm"], r["target_norm"], r["rule_id"]): r
                for r in store.query_dicts(DETECTION_KEYS_SQL, [run])}
    before, now = keys(previous), keys(current)
    active = set(store.query(ACTIVE_PAIRS_SQL, [current])) if before else set()
    changes = []
    for k in sorted(set(before) | set(now)):
        row = now.get(k) or before[k]
        if k in now:
            state = "still present" if k in before else "new"
        else:
            state = "resolved" if (k[0], k[1]) in active else "not seen"
        changes.append(DetectionChange(
            state, issue_key(*k), row["account"], row["target"], k[2], row["title"],
            row["severity"], row["review"], before[k]["n"] if k in before else 0,
            now[k]["n"] if k in now else 0))
    order = {"new": 0, "still present": 1, "resolved": 2, "not seen": 3}
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
    return sorted(changes, key=lambda c: (order[c.state], c.review == "MUTED",
                                          rank.get(c.severity, 5), -c.now, c.account, c.target,
                                          c.rule_id))


def coverage(store: Store, settings: Settings, week: Week) -> list[Coverage]:
    """Per activity source: rows in the week, and whether it went quiet before the week ended."""
    rows = {r["source"]: r for r in store.query_dicts(COVERAGE_SQL, {"start": week.start,
                                                                     "end": week.end})}
    expected = {s.connector for s in settings.sources
                if s.kind == "activity" or s.expect_activity
                or (s.kind is None and s.connector != "generic")}
    gap = timedelta(hours=settings.coverage_gap_hours)
    out = []
    for source in sorted(set(rows) | expected):
        r = rows.get(source, {"rows": 0, "last": None, "last_before": None})
        if not r["rows"]:
            seen = f"last seen {_iso(r['last_before'])}" if r["last_before"] else "never seen"
            status, msg = "FAIL", f"no activity from {source} in {week.label} ({seen})"
        elif week.end - r["last"] > gap:
            status, msg = "WARN", f"no activity from {source} since {_iso(r['last'])}"
        else:
            status, msg = "PASS", f"{source}: {r['rows']:,} action(s), last {_iso(r['last'])}"
        out.append(Coverage(source, r["rows"], r["last"], r["last_before"], status, msg))
    return out


def run_weekly(settings: Settings, week: Week | None = None, db: str | None = None,
               progress=None) -> WeeklyResult:
    """The whole weekly job; the bundle lands in OUTPUT/<week label>/."""
    from reports.evidence import write_bundle   # reports sit downstream of the engine
    from correlate.integrity.checks import run_checks
    week = week or last_full_week()
    if settings.tickets is not None:     # before ingesting anything, let alone connecting
        from connectors.http import credentials_problem
        from correlate.config import SECRET_ENV
        problem = credentials_problem(*SECRET_ENV[settings.tickets.system],
                                      settings.tickets.system)
        if problem:
            raise PamcorrError(problem)
    with Store(db or settings.db) as store:
        matched: dict = {}
        ingested = ingest_sources(store, settings, progress, matched)
        if hasattr(progress, "finish"):    # a progress bar (correlate/cli_progress.py): done
            progress.finish()
        tickets = fetch_tickets(store, settings, week)
        run_id = correlate(store, week.start, week.end, settings.policy,
                           {"job": "weekly", "week": week.label,
                            "config": str(settings.path) if settings.path else None},
                           detections=settings.detections, exceptions=settings.exceptions,
                           criticality=settings.criticality,
                           hygiene=settings.hygiene)
        previous = previous_weekly_run(store, run_id, week)
        summary = WeeklySummary(
            week=week, run_id=run_id, config=str(settings.path) if settings.path else None,
            ingest=ingested, tickets=tickets, totals=queries.verdict_totals(store, run_id),
            previous=previous,
            changes=compare_runs(store, previous["run_id"] if previous else None, run_id),
            coverage=coverage(store, settings, week),
            tickets_without_history=queries.tickets_without_history(store, run_id),
            detections=queries.detection_totals(store, run_id),
            detection_changes=compare_detections(store, previous["run_id"] if previous else None,
                                                 run_id),
            skipped_checks=queries.skipped_checks(store),
            source_coverage=source_coverage(store, settings.sources, matched, week),
            exceptions=run_exceptions(store, run_id),
            hygiene=queries.hygiene_counts(store, run_id),
            integrity=run_checks(store, week.start, week.end, now_utc()))
        out = Path(settings.output) / week.label
        bundle = write_bundle(store, out, run_id, siblings=True,
                              extra={"weekly.json": summary.as_json()},
                              parameters={"job": "weekly", "week": week.label},
                              weekly=summary, scope_pages=True)
    return WeeklyResult(summary, bundle.path, bundle.manifest_sha256)


def summary_lines(result: WeeklyResult) -> list[str]:
    """The one-screen summary `pamcorr run` prints."""
    s = result.summary
    lines = [f"pamcorr run {s.week.label} ({_iso(s.week.start)} .. {_iso(s.week.end)}): "
             f"run {s.run_id}"]
    new = sum(i.new_files for i in s.ingest)
    skipped = sum(i.skipped_files for i in s.ingest)
    quarantined = sum(i.quarantined for i in s.ingest)
    lines.append(f"ingest: {new} new file(s), {skipped} already ingested, "
                 f"{quarantined} row(s) quarantined")
    for i in s.ingest:
        for pattern in i.unmatched:
            lines.append(f"  {i.name}: nothing matches {pattern}")
        for message in i.not_read:
            lines.append(f"  {i.name}: {message}")
    lines.append(s.tickets)
    if s.tickets_without_history:
        shown = ", ".join(s.tickets_without_history[:5])
        lines.append(f"  {len(s.tickets_without_history)} ticket(s) judged by their current state "
                     f"only (state history unreadable): {shown}"
                     + (", ..." if len(s.tickets_without_history) > 5 else ""))
    lines += [f"  {line}" for line in s.skipped_checks]
    verdicts = ", ".join(f"{t['verdict']} {t['n']:,}" for t in s.totals) or "no actions"
    lines.append(f"verdicts: {verdicts}")
    lines += [line.strip() for line in exception_lines(s.totals, s.exceptions)]
    if s.previous:
        lines.append(f"since {s.previous['week']} (run {s.previous['run_id']}): "
                     f"{s.count('new')} new, {s.count('still failing')} still failing, "
                     f"{s.count('resolved')} resolved, {s.count('not seen')} not seen this week"
                     + _excepted_note(s))
        if s.previous.get("note"):
            lines.append(f"  {s.previous['note']}")
    else:
        lines.append(f"no earlier weekly run to compare with: {s.count('new')} failing issue(s)"
                     + _excepted_note(s))
    for c in [c for c in s.changes if c.state == "new"][:5]:
        lines.append(f"  new: {c.verdict} {c.account} on {c.target} ({c.now}x)")
    lines += detection_summary(s)
    lines.append(summary_line(s.hygiene).strip())
    from correlate.integrity.checks import summary_lines as integrity_lines
    lines += integrity_lines(s.integrity)
    problems = [c for c in s.coverage if c.status != "PASS"]
    lines.append("coverage: every source sent activity" if not problems else "coverage:")
    lines += [f"  {c.status}: {c.message}" for c in problems]
    quiet = [c for c in s.source_coverage if c.status != "PASS"]
    if s.source_coverage:
        lines.append(f"sources: every configured source sent data for {s.week.label}"
                     if not quiet else "sources:")
        lines += [f"  {c.status}: {c.message}" for c in quiet]
    lines.append(f"output: {result.out_dir}/index.html (manifest sha256 "
                 f"{result.manifest_sha256[:16]}...)")
    return lines


def _excepted_note(s: WeeklySummary) -> str:
    """`; 2 excepted issue(s) (5 FAIL action(s), not counted as failing)`, or nothing."""
    n = s.count("excepted")
    if not n:
        return ""
    actions = sum(c.excepted for c in s.changes if c.state == "excepted")
    return f"; {n} excepted issue(s) ({actions:,} FAIL action(s), not counted as failing)"


def detection_summary(s: WeeklySummary) -> list[str]:
    """The detection lines of the weekly summary: totals, then changes since the previous run."""
    total = sum(t["n"] for t in s.detections)
    muted = sum(t["n"] for t in s.detections if t["review"] == "MUTED")
    fail = sum(t["n"] for t in s.detections if t["review"] == "FAIL")
    lines = [f"detections: {total:,} ({fail:,} FAIL, {total - fail - muted:,} needs_review, "
             f"{muted:,} MUTED)"]
    if s.previous:
        lines.append(f"detections since {s.previous['week']}: {s.detection_count('new')} new, "
                     f"{s.detection_count('still present')} still present, "
                     f"{s.detection_count('resolved')} resolved, "
                     f"{s.detection_count('not seen')} not seen this week")
    for c in [c for c in s.detection_changes if c.state == "new"][:5]:
        lines.append(f"  new detection: {c.severity} {c.rule_id} {c.account} on {c.target} "
                     f"({c.review}, {c.now}x)")
    return lines


def worst_status(summary: WeeklySummary) -> set[str]:
    """Statuses present among findings no accepted exception covers and coverage, for
    --fail-on."""
    found = queries.counted_statuses(summary.totals)     # excepted findings do not count
    # a FAIL (WARN) hygiene check counts for --fail-on as a FAIL (WARN) finding does
    found |= {s for s, n in severities(summary.hygiene).items() if n and s != "INFO"}
    found |= {f["severity"] for f in summary.integrity if f["severity"] in ("FAIL", "WARN")}
    return (found | {c.status for c in summary.coverage}
            | {c.status for c in summary.source_coverage})
