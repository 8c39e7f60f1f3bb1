"""The weekly job's TOML file -> one frozen Settings object; secrets come only from the environment."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from correlate.detect.run import DetectionSettings, Mute
from correlate.engine import DEFAULT_GRACE_S, DEFAULT_LOOKAROUND_S, Policy
from correlate.hygiene import HygieneSettings, hygiene_settings
from correlate.queries import FAIL_ON_CHOICES
from correlate.errors import ConfigError, InputError
from correlate.exceptions import (CRITICALITY, TargetCriticality, VerdictException,
                                  glob_problem)
from correlate.findings import VERDICTS

DEFAULT_COVERAGE_GAP_HOURS = 24
DEFAULT_OUTPUT = "pamcorr-out"
TICKET_SYSTEMS = ("jira", "servicenow")

# Keys that look like a secret are refused wherever they appear: a config file gets committed,
# copied into tickets and attached to audits; a token belongs in the environment.
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api_?key|credential)s?$", re.IGNORECASE)
# Where each ticket system's fetcher reads its credentials (connectors/*_fetch.py).
SECRET_ENV = {"jira": ("PAMCORR_JIRA_USER", "PAMCORR_JIRA_TOKEN"),
              "servicenow": ("PAMCORR_SNOW_USER", "PAMCORR_SNOW_TOKEN")}

_TOP = {"db", "output", "policy", "sources", "tickets", "detections", "exceptions", "criticality",
        "hygiene"}
_DETECTIONS = {"rules", "enabled", "mute"}
_MUTE = {"rule", "account", "target", "ticket", "reason", "expires"}
_EXCEPTION = {"name", "account", "target", "verdict", "reason", "accepted_by", "expires"}
_POLICY = {"grace_s", "lookaround_s", "fail_on", "coverage_gap_hours", "change_window"}
_SOURCE = {"name", "connector", "kind", "paths", "tz", "year", "expect_activity",
           "cloudtrail_public_keys", "digest_metadata"}
# Files a cloudtrail source names for the integrity checks (docs/integrity.md), as the
# --option of `pamcorr ingest cloudtrail` of the same names.
_INTEGRITY_FILES = ("cloudtrail_public_keys", "digest_metadata")
_TICKETS = {"system", "url", "flavour", "timeout", "max_retries"}


@dataclass(frozen=True)
class SourceConfig:
    """One `[[sources]]` entry: which connector reads which files, with which options."""

    name: str
    connector: str
    paths: tuple[str, ...]
    kind: str | None = None
    tz: str | None = None
    year: int | None = None
    expect_activity: bool = False   # a coverage finding when it sends no activity in the period
    cloudtrail_public_keys: str | None = None   # `aws cloudtrail list-public-keys` output
    digest_metadata: str | None = None          # JSON lines {key, signature} (head-object)

    def options(self) -> dict:
        """The integrity files this source names, as ingest options (`--option` names)."""
        return {k: getattr(self, k) for k in _INTEGRITY_FILES if getattr(self, k)}


@dataclass(frozen=True)
class TicketsConfig:
    """`[tickets]`: a ticket system to fetch the period's referenced tickets from."""

    system: str
    url: str
    flavour: str | None = None
    timeout: float = 30.0
    max_retries: int = 3


@dataclass(frozen=True)
class Settings:
    """Everything `pamcorr run` needs; relative paths are resolved against the config's folder."""

    path: Path | None
    db: str | None
    output: Path
    policy: Policy = Policy()
    fail_on: tuple[str, ...] | None = None   # statuses (fail, warn) and/or severities
    coverage_gap_hours: float = DEFAULT_COVERAGE_GAP_HOURS
    sources: tuple[SourceConfig, ...] = ()
    tickets: TicketsConfig | None = None
    detections: DetectionSettings = DetectionSettings()
    exceptions: tuple[VerdictException, ...] = ()       # [[exceptions]]: accepted, for verdicts
    criticality: tuple[TargetCriticality, ...] = ()     # [criticality]: target globs -> level
    hygiene: HygieneSettings = HygieneSettings()     # [hygiene]: the checks' thresholds


def _fail(path: Path, message: str, line: int | None = None) -> InputError:
    return InputError(message, str(path), line)


def _check_keys(path: Path, where: str, table: dict, allowed: set[str]) -> None:
    for key in table:
        if _SECRET_KEY.search(key):
            names = ", ".join(v for pair in SECRET_ENV.values() for v in pair)
            raise _fail(path, f"{where}.{key}: secrets are not read from the config file; set "
                              f"them in the environment ({names})")
        if key not in allowed:
            raise _fail(path, f"{where}: unknown key {key!r} (known: {', '.join(sorted(allowed))})")


def _typed(path: Path, where: str, value, types, name: str):
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) or not isinstance(value, types):
        raise _fail(path, f"{where}.{name}: expected {' or '.join(t.__name__ for t in types)}, "
                          f"got {value!r}")
    return value


def _source(path: Path, base: Path, i: int, raw) -> SourceConfig:
    where = f"sources[{i}]"
    if not isinstance(raw, dict):
        raise _fail(path, f"{where}: expected a table ([[sources]])")
    _check_keys(path, where, raw, _SOURCE)
    if "connector" not in raw or "paths" not in raw:
        raise _fail(path, f"{where}: needs connector and paths")
    paths = raw["paths"]
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise _fail(path, f"{where}.paths: a path, glob or list of them")
    resolved = tuple(p if os.path.isabs(os.path.expanduser(p)) else str(base / p)
                     for p in (os.path.expanduser(p) for p in paths))
    year = raw.get("year")
    if year is not None:
        _typed(path, where, year, int, "year")
    files = {}
    for key in _INTEGRITY_FILES:
        if key in raw:
            if str(raw["connector"]) != "cloudtrail":
                raise ConfigError(f"{where}.{key}: only a cloudtrail source has digests to check "
                                  f"(this one is {raw['connector']!r})", str(path))
            value = os.path.expanduser(_typed(path, where, raw[key], str, key))
            files[key] = value if os.path.isabs(value) else str(base / value)
    return SourceConfig(
        name=str(raw.get("name") or raw["connector"]), connector=str(raw["connector"]),
        paths=resolved, kind=raw.get("kind"), tz=raw.get("tz"), year=year,
        expect_activity=bool(raw.get("expect_activity", False)), **files)


def _tickets(path: Path, raw) -> TicketsConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail(path, "[tickets]: expected a table")
    _check_keys(path, "tickets", raw, _TICKETS)
    system, url = raw.get("system"), raw.get("url")
    if system not in TICKET_SYSTEMS:
        raise _fail(path, f"tickets.system: one of {', '.join(TICKET_SYSTEMS)}, not {system!r}")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise _fail(path, "tickets.url: the server's base URL (https://...)")
    if "@" in url.split("//", 1)[1].split("/", 1)[0]:
        raise _fail(path, "tickets.url: no user or password in the URL; use the environment "
                          f"({', '.join(SECRET_ENV[system])})")
    return TicketsConfig(system=system, url=url, flavour=raw.get("flavour"),
                         timeout=float(raw.get("timeout", 30.0)),
                         max_retries=int(raw.get("max_retries", 3)))


def _expiry(path: Path, where: str, value, error=InputError) -> datetime:
    """A mute's expiry: a TOML date (the mute holds through that UTC day) or a datetime with a
    zone (a local datetime is refused: timestamps without a zone are errors)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise error(f"{where}.expires: give a zone (2027-01-31T18:00:00Z) or a date",
                        str(path))
        return value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value + timedelta(days=1), time(0), tzinfo=timezone.utc)
    raise error(f"{where}.expires: a date (2027-01-31) or a datetime with a zone", str(path))


def _detections(path: Path, base: Path, raw) -> DetectionSettings:
    """`[detections]`: user rule folders, on/off, and `[[detections.mute]]` allow entries."""
    if raw is None:
        return DetectionSettings()
    if not isinstance(raw, dict):
        raise _fail(path, "[detections]: expected a table")
    _check_keys(path, "detections", raw, _DETECTIONS)
    folders = raw.get("rules", [])
    if isinstance(folders, str):
        folders = [folders]
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise _fail(path, "detections.rules: a folder or a list of folders of Sigma rule files")
    mutes = []
    for i, m in enumerate(raw.get("mute", [])):
        where = f"detections.mute[{i}]"
        if not isinstance(m, dict):
            raise _fail(path, f"{where}: expected a table ([[detections.mute]])")
        _check_keys(path, where, m, _MUTE)
        for key in ("rule", "reason", "expires"):
            if key not in m:
                raise _fail(path, f"{where}: needs rule, reason and expires (a mute never lasts "
                                  "forever and always says why)")
        scope = {k: _typed(path, where, m[k], str, k) for k in ("account", "target", "ticket")
                 if k in m}
        if not scope:
            raise _fail(path, f"{where}: name the account, target or ticket (glob) it covers; "
                              'use account = "*" to mute the rule everywhere')
        mutes.append(Mute(rule=_typed(path, where, m["rule"], str, "rule"),
                          reason=_typed(path, where, m["reason"], str, "reason"),
                          expires=_expiry(path, where, m["expires"]), **scope))
    return DetectionSettings(
        rule_dirs=tuple(str(base / os.path.expanduser(f)) for f in folders),
        mutes=tuple(mutes), enabled=bool(raw.get("enabled", True)))


# What an exception's verdict glob may cover: the verdicts that FAIL or WARN.
FAILING_VERDICTS = tuple(v for v, status in VERDICTS.items() if status in ("FAIL", "WARN"))


def _exceptions(path: Path, raw) -> tuple[VerdictException, ...]:
    """`[[exceptions]]`: accepted exceptions for verdicts. Every problem is a ConfigError (exit 2)
    naming the entry: an exception never lasts forever, always says why and who accepted it,
    and a glob that can match nothing is refused rather than silently excepting nothing."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("exceptions: use [[exceptions]] tables", str(path))
    out, names = [], set()
    for i, x in enumerate(raw):
        where = f"exceptions[{i}]"
        if not isinstance(x, dict):
            raise ConfigError(f"{where}: expected a table ([[exceptions]])", str(path))
        if isinstance(x.get("name"), str) and x["name"].strip():
            where = f"{where} ({x['name']})"
        for key in x:
            if key not in _EXCEPTION:
                raise ConfigError(f"{where}: unknown key {key!r} (known: "
                                  f"{', '.join(sorted(_EXCEPTION))})", str(path))
        missing = [k for k in ("reason", "accepted_by", "expires")
                   if not (x.get(k).strip() if isinstance(x.get(k), str) else x.get(k))]
        if missing:
            raise ConfigError(f"{where}: needs {', '.join(missing)} (an exception says why, who "
                              "accepted it and until when)", str(path))
        for key in ("name", "reason", "accepted_by"):
            if key in x and not isinstance(x[key], str):
                raise ConfigError(f"{where}.{key}: expected a string, got {x[key]!r}", str(path))
        globs = {k: x[k] for k in ("account", "target", "verdict") if k in x}
        if not globs:
            raise ConfigError(f"{where}: name the account, target or verdict (globs) it covers; "
                              'use account = "*" to except every account', str(path))
        for key, pattern in globs.items():
            problem = glob_problem(pattern)
            if problem:
                raise ConfigError(f"{where}.{key}: {problem}", str(path))
        if "verdict" in globs and not _glob_hits(globs["verdict"], FAILING_VERDICTS):
            raise ConfigError(f"{where}.verdict: {globs['verdict']!r} matches no verdict that "
                              f"FAILs or WARNs ({', '.join(FAILING_VERDICTS)})", str(path))
        name = x.get("name", "").strip() or f"exceptions[{i}]"
        if name in names:
            raise ConfigError(f"{where}: another exception is named {name!r}", str(path))
        names.add(name)
        out.append(VerdictException(name=name, reason=x["reason"].strip(),
                                    accepted_by=x["accepted_by"].strip(),
                                    expires=_expiry(path, where, x["expires"], ConfigError),
                                    **globs))
    return tuple(out)


def _glob_hits(pattern: str, names: tuple[str, ...]) -> list[str]:
    """The names a glob matches, by DuckDB's own GLOB (the one the run uses), case-insensitive."""
    import duckdb
    with duckdb.connect() as con:
        return con.execute("SELECT list_filter($names, lambda v: v GLOB lower($p))",
                           {"names": list(names), "p": pattern}).fetchall()[0][0]


def _criticality(path: Path, raw) -> tuple[TargetCriticality, ...]:
    """`[criticality]`: `"db-prod-*" = "high"`; a bad level or glob is a ConfigError (exit 2)."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError('[criticality]: expected a table of target globs ("db-prod-*" = '
                          '"high")', str(path))
    out, seen = [], {}
    for pattern, level in raw.items():
        where = f"criticality.{pattern!r}"
        problem = glob_problem(pattern)
        if problem:
            raise ConfigError(f"{where}: {problem}", str(path))
        if not isinstance(level, str) or level.strip().lower() not in CRITICALITY:
            raise ConfigError(f"{where}: one of {', '.join(CRITICALITY)}, not {level!r}",
                              str(path))
        key = pattern.strip().lower()
        if key in seen:
            raise ConfigError(f"{where}: the same pattern as {seen[key]!r} (case does not "
                              "count)", str(path))
        seen[key] = pattern
        out.append(TargetCriticality(key, level.strip().lower()))
    return tuple(out)
def _hygiene(path: Path, raw) -> HygieneSettings:
    """`[hygiene]`: approval hygiene thresholds (docs/hygiene.md); unknown keys, values that are
    not numbers and negative ones are errors naming the file."""
    if raw is None:
        return HygieneSettings()
    if not isinstance(raw, dict):
        raise _fail(path, "[hygiene]: expected a table")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, f"hygiene.{key}: expected a number, got {value!r}")
    try:
        return hygiene_settings(raw)
    except ValueError as exc:
        raise _fail(path, f"[hygiene]: {exc}") from None


def parse_settings(data: dict, path: Path, base: Path | None = None) -> Settings:
    """Settings from an already-parsed TOML document (`path` names it in errors)."""
    base = base or path.parent
    _check_keys(path, "config", data, _TOP)
    policy = data.get("policy", {})
    if not isinstance(policy, dict):
        raise _fail(path, "[policy]: expected a table")
    _check_keys(path, "policy", policy, _POLICY)
    grace = _typed(path, "policy", policy.get("grace_s", DEFAULT_GRACE_S), int, "grace_s")
    look = _typed(path, "policy", policy.get("lookaround_s", DEFAULT_LOOKAROUND_S), int,
                  "lookaround_s")
    if grace < 0 or look < 0:
        raise _fail(path, "policy: grace_s and lookaround_s must not be negative")
    window = policy.get("change_window", "planned")
    if window not in ("planned", "actual"):
        raise _fail(path, f"policy.change_window: planned or actual, not {window!r}")
    fail_on = policy.get("fail_on")
    levels = [fail_on] if isinstance(fail_on, str) else fail_on
    if levels is not None and (not isinstance(levels, list)
                               or any(level not in FAIL_ON_CHOICES for level in levels)):
        raise _fail(path, f"policy.fail_on: one or a list of {', '.join(FAIL_ON_CHOICES)}, "
                          f"not {fail_on!r}")
    fail_on = tuple(levels) if levels else None
    gap = _typed(path, "policy", policy.get("coverage_gap_hours", DEFAULT_COVERAGE_GAP_HOURS),
                 (int, float), "coverage_gap_hours")
    sources = data.get("sources", [])
    if not isinstance(sources, list):
        raise _fail(path, "sources: use [[sources]] tables")
    db = data.get("db")
    if db is not None and db != ":memory:":
        db = str(base / os.path.expanduser(_typed(path, "config", db, str, "db")))
    output = _typed(path, "config", data.get("output", DEFAULT_OUTPUT), str, "output")
    return Settings(
        path=path, db=db, output=base / os.path.expanduser(output),
        policy=Policy(grace, look, window), fail_on=fail_on, coverage_gap_hours=float(gap),
        sources=tuple(_source(path, base, i, s) for i, s in enumerate(sources)),
        tickets=_tickets(path, data.get("tickets")),
        detections=_detections(path, base, data.get("detections")),
        exceptions=_exceptions(path, data.get("exceptions")),
        criticality=_criticality(path, data.get("criticality")),
        hygiene=_hygiene(path, data.get("hygiene")))


def load_settings(path: str | os.PathLike) -> Settings:
    """Read and check a pamcorr TOML file; errors name the file (and line for syntax errors)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(path, "config file not found (see pamcorr.example.toml)") from None
    except OSError as exc:
        raise _fail(path, f"cannot read config: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:
            found = re.search(r"line (\d+)", str(exc))
            line = int(found.group(1)) if found else None
        raise _fail(path, f"not valid TOML: {str(exc).split(' (at line')[0]}", line) from None
    return parse_settings(data, path, path.resolve().parent)
