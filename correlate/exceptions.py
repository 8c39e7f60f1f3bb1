"""Accepted exceptions for verdicts and target criticality: stored per run, matched in SQL.

An exception (`[[exceptions]]` in the config, docs/verdicts.md) marks the FAIL and WARN findings
whose account, target and verdict match its globs as EXCEPTED: they keep their verdict and
status, are counted apart and do not count for --fail-on. Criticality (`[criticality]`) ranks
targets for the gap report's grouped findings. Both are written with the run they judged, so a
report of that run reads them from the store, never from a config file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

# From the most to the least critical; a target no pattern matches has no criticality and sorts
# after `low`.
CRITICALITY = ("critical", "high", "medium", "low")

_CLASS = re.compile(r"\[!?[^\]]+\]")       # a character class, as DuckDB's GLOB reads it


@dataclass(frozen=True)
class VerdictException:
    """One accepted exception: globs on account, target and verdict (None: any), all of them
    case-insensitive; who accepted it, why, and until when (an aware UTC datetime, exclusive)."""

    name: str
    reason: str
    accepted_by: str
    expires: datetime
    account: str | None = None
    target: str | None = None
    verdict: str | None = None


@dataclass(frozen=True)
class TargetCriticality:
    """`"db-prod-*" = "high"`: a target glob (lower case) and its level."""

    pattern: str
    level: str

    @property
    def specificity(self) -> int:
        """Characters that are not wildcards (`*`, `?`, a `[...]` class): the most specific
        matching pattern decides a target's criticality."""
        return len(_CLASS.sub("", self.pattern).replace("*", "").replace("?", ""))


def glob_problem(pattern) -> str | None:
    """Why a glob cannot be used as written (None: it can). DuckDB's GLOB matches nothing, and
    says nothing, for an empty pattern or a `[` that is never closed."""
    if not isinstance(pattern, str):
        return f"expected a glob (a string), got {pattern!r}"
    if not pattern.strip():
        return "an empty pattern matches nothing"
    rest = _CLASS.sub("", pattern)
    if "[" in rest:
        return f"{pattern!r}: a '[' without its closing ']' (or an empty class) matches nothing"
    return None


# --- stored per run -------------------------------------------------------------------------

ENTRY_SQL = """
INSERT INTO verdict_exceptions VALUES ($run_id, $n, $name, $account, $target, $verdict, $reason,
                                       $accepted_by, $expires, $expires <= $now, 0)
"""

# The run's failing keys (account, target, verdict; FAIL and WARN) with their counts, matched
# against every entry once: entries are few, keys far fewer than findings.
MATCH_SQL = """
CREATE OR REPLACE TEMP TABLE exc_match AS
WITH keys AS (
    SELECT lower(a.account) AS account, lower(a.target) AS target, f.verdict, count(*) AS n
    FROM findings f JOIN activity a USING (act_id)
    WHERE f.run_id = $run_id AND f.status IN ('FAIL', 'WARN')
    GROUP BY ALL
)
SELECT k.account, k.target, k.verdict, k.n, x.n AS entry, x.expired
FROM keys k JOIN verdict_exceptions x
  ON x.run_id = $run_id
 AND (x.account IS NULL OR k.account GLOB lower(x.account))
 AND (x.target IS NULL OR k.target GLOB lower(x.target))
 AND (x.verdict IS NULL OR k.verdict GLOB lower(x.verdict))
"""

# Each failing finding whose key an entry in force matches; the first such entry covers it.
# The key is joined as one value: with three separate conditions the planner joined on the
# verdict alone first (findings x keys of that verdict: 20 GB at 1e6 actions).
COVER_SQL = """
INSERT INTO finding_exceptions
SELECT $run_id, f.act_id, m.entry
FROM findings f JOIN activity a USING (act_id)
JOIN (SELECT (account, target, verdict) AS k, min(entry) AS entry FROM exc_match
      WHERE NOT expired GROUP BY ALL) m
  ON m.k = (lower(a.account), lower(a.target), f.verdict)
WHERE f.run_id = $run_id AND f.status IN ('FAIL', 'WARN')
"""

# In force: the findings it covers. Expired: the failing findings it would have covered.
COUNT_SQL = """
UPDATE verdict_exceptions x SET findings = c.n
FROM (SELECT entry, sum(n) AS n FROM exc_match m
      WHERE expired OR entry = (SELECT min(o.entry) FROM exc_match o
                                WHERE NOT o.expired AND o.account = m.account
                                  AND o.target = m.target AND o.verdict = m.verdict)
      GROUP BY entry) c
WHERE x.run_id = $run_id AND x.n = c.entry
"""

CRITICALITY_SQL = "INSERT INTO target_criticality VALUES ($run_id, $pattern, $level, $specificity)"


def record_exceptions(con, run_id: int, now: datetime,
                      exceptions: tuple[VerdictException, ...] = (),
                      criticality: tuple[TargetCriticality, ...] = ()) -> None:
    """Store the run's exceptions (expired ones flagged, `now` deciding) and the findings they
    cover, and its target criticality. Inside the run's transaction."""
    for i, x in enumerate(exceptions):
        con.execute(ENTRY_SQL, {"run_id": run_id, "n": i, "name": x.name, "account": x.account,
                                "target": x.target, "verdict": x.verdict, "reason": x.reason,
                                "accepted_by": x.accepted_by, "expires": x.expires, "now": now})
    for c in criticality:
        con.execute(CRITICALITY_SQL, {"run_id": run_id, "pattern": c.pattern, "level": c.level,
                                      "specificity": c.specificity})
    if not exceptions:
        return
    try:
        for statement in (MATCH_SQL, COVER_SQL, COUNT_SQL):
            con.execute(statement, {"run_id": run_id})
    finally:
        con.execute("DROP TABLE IF EXISTS exc_match")


RUN_EXCEPTIONS_SQL = """
SELECT n, name, account, target, verdict, reason, accepted_by, expires, expired, findings
FROM verdict_exceptions WHERE run_id = ? ORDER BY n
"""


def until(expires: datetime) -> str:
    """`2027-04-01T00:00:00Z (held through 2027-03-31 UTC)`: an expiry given as a date ends at
    the next UTC midnight, and that is how people wrote it."""
    expires = expires.astimezone(timezone.utc)
    text = expires.isoformat().replace("+00:00", "Z")
    if expires.time() == time(0):
        text += f" (held through {(expires - timedelta(days=1)).date()} UTC)"
    return text


def run_exceptions(store, run_id: int) -> list[dict]:
    """The exceptions a run was judged with, in config order, expired ones flagged; `findings`:
    covered (in force) or would have covered (expired); `until`: the expiry as people read it."""
    return [{**x, "until": until(x["expires"])}
            for x in store.query_dicts(RUN_EXCEPTIONS_SQL, [run_id])]


def expired_line(x: dict) -> str:
    """`exception X expired on D; n finding(s) it would have covered`."""
    return (f"exception {x['name']} expired on {until(x['expires'])}; {x['findings']:,} "
            f"finding(s) it would have covered (accepted by {x['accepted_by']})")


def exception_lines(totals: list[dict], accepted: list[dict]) -> list[str]:
    """The EXCEPTED line (failing = excepted + not excepted) and one line per expired exception;
    nothing when the run had no exception entries."""
    if not accepted:
        return []
    failing = sum(t["n"] for t in totals if t["status"] in ("FAIL", "WARN"))
    excepted = sum(t["excepted"] for t in totals)
    live = sum(1 for x in accepted if not x["expired"])
    lines = [f"  EXCEPTED {excepted:,}: failing (FAIL, WARN) {failing:,} = excepted {excepted:,} "
             f"+ not excepted {failing - excepted:,}; {live} accepted exception(s) in force "
             f"(excepted findings keep their verdict and do not count for --fail-on)"]
    return lines + [f"  warning: {expired_line(x)}" for x in accepted if x["expired"]]
