"""Evidence bundles: findings (CSV, JSONL, OCSF), the gap report, an index page and a manifest
chained to the previous bundle by the sha256 of its manifest; and the verifier that recomputes it all."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from correlate import __version__, queries
from correlate.clock import now_utc
from correlate.errors import OutputError, PamcorrError
from correlate.hygiene import severities
from correlate.store import Store
from reports import hygiene as hyg
from reports.export import iso
from reports.detections_sql import copy_detections, detection_groups
from reports.export_sql import copy_findings, findings_summary
from reports.gaps import FRAMEWORKS, write_gap_report
from reports.ocsf_sql import copy_findings_ocsf
from reports.render import render
from reports.scope_pages import plan as plan_scope_pages, write_pages as write_scope_pages

MANIFEST = "manifest.json"
INDEX = "index.html"
FORMAT = "pamcorr-evidence/1"

INPUTS_SQL = """
SELECT ingest_id, source, kind, file, sha256, size_bytes, read, accepted, quarantined, duplicates,
       coalesce(ignored, 0) AS ignored, finished AS ingested
FROM ingest_log WHERE finished IS NOT NULL ORDER BY ingest_id
"""

# Weekly bundles chain to their older siblings in the same folder: named YYYY-Www, they sort by week.
LAST_SIBLING_SQL = """
SELECT bundle, manifest_sha256 FROM exports
WHERE starts_with(path, ?) AND bundle < ? AND path <> ?
  AND regexp_full_match(bundle, '[0-9]{4}-W[0-9]{2}')
ORDER BY bundle DESC, export_id DESC LIMIT 1
"""

RECORD_EXPORT_SQL = """
INSERT INTO exports (export_id, created, run_id, path, bundle, manifest_sha256, previous_sha256)
SELECT coalesce(max(export_id), 0) + 1, ?, ?, ?, ?, ?, ? FROM exports
"""

INTEGRITY = "input-integrity.json"     # the manifest's input_integrity, as a hashed file
DESCRIPTIONS = {
    INTEGRITY: "input integrity: check counts, digest chain heads, key fingerprints "
               "(as manifest.json input_integrity)",
    "findings.csv": "every finding of the period, formula-safe CSV",
    "findings.jsonl": "every finding of the period, JSON lines",
    "findings.ocsf.json": "every finding, and every detection (a sequence as one), as an OCSF "
                          "1.3 Detection Finding (class 2004)",
    "detections.csv": "every detection of the period (one row per action and rule, worst "
                      "first), formula-safe CSV",
    "detections.jsonl": "every detection of the period, JSON lines",
    "hygiene.csv": "the run's approval hygiene findings (self-approval, bypass, unused, ...; "
                   "worst first) with their evidence, formula-safe CSV",
    "hygiene.jsonl": "the run's approval hygiene findings, JSON lines",
    "gap-report.html": "the gap report of the run",
    "weekly.json": "the weekly run: ingest, coverage, changes since the previous week (JSON)",
}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Bundle:
    """What write_bundle produced."""

    path: Path
    manifest_sha256: str
    manifest: dict


@dataclass
class BundleIndexContext:
    """Everything bundle_index.html shows; the template only lays it out."""

    title: str
    generated: datetime
    tool_version: str
    run: dict
    period_start: datetime | None
    period_end: datetime | None
    files: list[dict]
    previous: dict | None
    frameworks: tuple
    sources: list[dict]
    inputs: list[dict]
    quarantined_total: int
    totals: list[dict]
    weekly: object | None = None    # correlate.jobs.WeeklySummary when a weekly run wrote it


def _json_default(value):
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


def _dumps(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default)
            + "\n").encode("utf-8")


# What a damaged zip raises: a cut or foreign file, a flipped byte in a member's deflate stream or
# its CRC-32, a member cut short, a compression method zipfile cannot read.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError)


class DamagedBundle(PamcorrError):
    """A bundle .zip (or one of its members) that cannot be read back."""


class BundleReader:
    """A bundle folder or .zip, read the same way."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.zip = None
        if self.path.is_file():
            try:
                self.zip = zipfile.ZipFile(self.path)
            except ZIP_ERRORS as exc:
                raise DamagedBundle(f"damaged: {self.path} is not a readable zip ({exc})") from None
        elif not self.path.is_dir():
            raise PamcorrError(f"{self.path}: no such bundle (a folder or .zip)")

    def names(self) -> set[str]:
        if self.zip:
            return {n for n in self.zip.namelist() if not n.endswith("/")}
        return {p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()}

    def read(self, name: str) -> bytes | None:
        """The member's bytes; None when absent; DamagedBundle when it cannot be read back."""
        try:
            return self.zip.read(name) if self.zip else (self.path / name).read_bytes()
        except (KeyError, FileNotFoundError, IsADirectoryError):
            return None
        except ZIP_ERRORS as exc:
            raise DamagedBundle(f"damaged: {name} in {self.path} ({exc})") from None

    def close(self) -> None:
        if self.zip:
            self.zip.close()


def _previous_from_path(path: Path) -> dict:
    """{'bundle', 'manifest_sha256'} of a bundle folder, .zip or manifest.json."""
    path = Path(path)
    if path.name == MANIFEST and path.is_file():
        data, name = path.read_bytes(), path.parent.name
    else:
        reader = BundleReader(path)
        try:
            data, name = reader.read(MANIFEST), path.name
        finally:
            reader.close()
        if data is None:
            raise PamcorrError(f"{path}: not a pamcorr bundle (no {MANIFEST})")
    return {"bundle": name, "manifest_sha256": sha256_bytes(data)}


def _rows_in(name: str, data: bytes) -> int | None:
    if name in ("findings.jsonl", "detections.jsonl", "hygiene.jsonl"):
        return sum(1 for line in data.splitlines() if line.strip())
    if name == "findings.ocsf.json":
        return len(json.loads(data))
    if name in ("findings.csv", "detections.csv", "hygiene.csv"):
        return max(0, sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8")))) - 1)
    return None


def write_bundle(store: Store, out: str | os.PathLike, run_id: int | None = None,
                 start: datetime | None = None, end: datetime | None = None,
                 previous: str | os.PathLike | None = None, siblings: bool = False,
                 extra: dict | None = None, parameters: dict | None = None,
                 weekly: object | None = None, scope_pages: bool = False) -> Bundle:
    """Write a bundle folder (or a .zip when `out` ends in .zip) and record it in `exports`.

    `previous` names the bundle this one follows; with `siblings` (the weekly run) it is the
    newest older-named bundle exported into the same folder; else the bundle starts a chain.
    `extra` adds files (name -> text); `weekly` adds the weekly sections to the index;
    `scope_pages` adds scope/ pages for the accounts and approvals with most FAIL actions, which
    the gap report links to.
    """
    out = Path(out).resolve()
    _check_replaceable(out)
    run_id = queries.resolve_run(store, run_id)
    run = queries.run_info(store, run_id)
    n_findings, first_ts, last_ts = findings_summary(store, run_id=run_id, start=start, end=end)
    period_start = start or run["period_start"] or first_ts
    period_end = end or run["period_end"] or last_ts
    prev = None
    if previous is not None:
        prev = _previous_from_path(Path(previous))
    elif siblings:   # the weekly run: the newest older-named bundle in the same folder
        row = store.query(LAST_SIBLING_SQL, [str(out.parent) + os.sep, out.name, str(out)])
        prev = {"bundle": row[0][0], "manifest_sha256": row[0][1]} if row else None
    created = now_utc()
    work = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        rows = {}   # what each writer wrote, so the big files are not read back to count
        for fmt in ("csv", "jsonl"):     # rendered in SQL, written by DuckDB
            rows[f"findings.{fmt}"] = copy_findings(store, fmt, work / f"findings.{fmt}",
                                                    run_id=run_id, start=start, end=end)
            rows[f"detections.{fmt}"] = copy_detections(store, fmt, work / f"detections.{fmt}",
                                                        run_id=run_id, start=start, end=end)
        rows["findings.ocsf.json"] = copy_findings_ocsf(
            store, work / "findings.ocsf.json", run["finished"],
            groups=detection_groups(store, run_id=run_id, start=start, end=end), run_id=run_id,
            start=start, end=end)
        hygiene = hyg.hygiene_rows(store, run_id)   # per run: the approvals starting in it
        with open(work / "hygiene.csv", "w", encoding="utf-8", newline="") as fh:
            rows["hygiene.csv"] = hyg.write_csv(hygiene, fh)
        with open(work / "hygiene.jsonl", "w", encoding="utf-8") as fh:
            rows["hygiene.jsonl"] = hyg.write_jsonl(hygiene, fh)
        links = plan_scope_pages(store, run_id) if scope_pages else None
        write_gap_report(store, work / "gap-report.html", run_id, links=links)
        if links:
            write_scope_pages(store, work, links, run)
        for name, text in (extra or {}).items():
            (work / name).write_text(text, encoding="utf-8")
        integrity = input_integrity(store, run)
        (work / INTEGRITY).write_bytes(_dumps(integrity))
        files = []
        for p in _members(work):
            name = p.relative_to(work).as_posix()
            with open(p, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            n = rows[name] if name in rows else _rows_in(name, p.read_bytes())
            files.append({"path": name, "sha256": digest, "size": p.stat().st_size,
                          "rows": n, "description": DESCRIPTIONS.get(name, _describe(name))})
        sources = queries.source_counts(store)
        inputs = store.query_dicts(INPUTS_SQL)
        quarantined = store.scalar("SELECT count(*) FROM quarantine")
        ctx = BundleIndexContext(
            title=f"pamcorr evidence bundle {out.name}", generated=created,
            tool_version=__version__, run=run, period_start=period_start, period_end=period_end,
            files=files, previous=prev, frameworks=FRAMEWORKS, sources=sources, inputs=inputs,
            quarantined_total=quarantined, totals=queries.verdict_totals(store, run_id),
            weekly=weekly)
        index = render("bundle_index.html", {"r": ctx}).encode("utf-8")
        (work / INDEX).write_bytes(index)
        files.append({"path": INDEX, "sha256": sha256_bytes(index), "size": len(index),
                      "rows": None, "description": "this bundle's index page"})
        manifest = {
            "format": FORMAT, "tool": {"name": "pamcorr", "version": __version__},
            "created": created, "bundle": out.name,
            "run": {**run, "parameters": json.loads(run["parameters"] or "{}")},
            "parameters": {"run": run_id, "from": start, "to": end, **(parameters or {})},
            "period": {"start": period_start, "end": period_end},
            "findings": n_findings,
            "detections": rows["detections.csv"],
            "hygiene": severities(queries.hygiene_counts(store, run_id)),
            "inputs": inputs,
            "completeness": {"sources": sources, "quarantined": quarantined},
            "input_integrity": integrity,
            "controls": [{"framework": f, "control": c, "evidences": e} for f, c, e in FRAMEWORKS],
            "outputs": sorted(files, key=lambda f: f["path"]),
            "previous": prev,
        }
        data = _dumps(manifest)
        (work / MANIFEST).write_bytes(data)
        _publish(work, out)
    except OSError as exc:      # full disk, quota, ulimit -f: name the bundle, not a temp file
        raise OutputError(out, exc) from None
    except OutputError as exc:  # the gap report inside it
        raise OutputError(out, exc.cause) from None
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
    digest = sha256_bytes(data)
    with store.transaction() as con:
        con.execute(RECORD_EXPORT_SQL, [created, run_id, str(out), out.name, digest,
                                        prev["manifest_sha256"] if prev else None])
    return Bundle(out, digest, manifest)


def _members(work: Path) -> list[Path]:
    """Every file of a bundle being written, its scope/ pages included, in name order."""
    return sorted((p for p in work.rglob("*") if p.is_file()),
                  key=lambda p: p.relative_to(work).as_posix())


def _describe(name: str) -> str:
    if name.startswith("scope/"):
        return "a scope page: everything on record for one account or approval in the period"
    return ""


def input_integrity(store: Store, run: dict) -> dict:
    """The input-integrity pass recorded for the run's period, else the one over all records."""
    from correlate.integrity.checks import manifest_section
    got = manifest_section(store, run["period_start"], run["period_end"])
    return got if got.get("checked") else manifest_section(store, None, None)


def _check_integrity(reader: BundleReader, manifest: dict, v: Verification) -> None:
    """manifest.json input_integrity must be what the hashed input-integrity.json says."""
    if "input_integrity" not in manifest:
        return
    try:
        data = reader.read(INTEGRITY)
    except DamagedBundle as exc:
        v.problems.append(str(exc))
        return
    try:
        same = data is not None and json.loads(data) == manifest["input_integrity"]
    except ValueError:
        same = False
    if not same:
        v.problems.append(f"changed: {MANIFEST} input_integrity differs from {INTEGRITY}")


def _check_replaceable(out: Path) -> None:
    """Only an empty folder or an earlier pamcorr bundle may be replaced; never anything else."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if out.is_dir() or zipfile.is_zipfile(out):
        reader = BundleReader(out)
        try:
            data = reader.read(MANIFEST)
        finally:
            reader.close()
        try:
            if data is not None and json.loads(data).get("format") == FORMAT:
                return
        except ValueError:
            pass
    raise PamcorrError(f"{out} exists and is not a pamcorr bundle; choose a new folder or .zip")


def _publish(work: Path, out: Path) -> None:
    """Move the finished bundle into place: a .zip, or a folder replacing any older one."""
    if out.suffix.lower() == ".zip":
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for p in _members(work):
                    zf.write(p, p.relative_to(work).as_posix())
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)   # mkdtemp made it private
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(work, out)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class Verification:
    """The verifier's answer; `ok` only when every file and every chain link checks out."""

    bundle: Path
    files_total: int = 0
    files_valid: int = 0
    links_total: int = 0
    links_valid: int = 0
    problems: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)
    manifest_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"manifest sha256 {self.manifest_sha256}"] if self.manifest_sha256 else []
        out += [f"files: {self.files_valid}/{self.files_total} valid",
               f"chain: {self.links_valid}/{self.links_total} links valid"]
        out += [f"  {c}" for c in self.chain]
        out += [f"problem: {p}" for p in self.problems]
        out.append("OK" if self.ok else "FAILED")
        return out


def _check_files(reader: BundleReader, manifest: dict, v: Verification) -> None:
    listed = {o["path"]: o for o in manifest.get("outputs", [])}
    v.files_total = len(listed)
    for name, entry in sorted(listed.items()):
        try:
            data = reader.read(name)
        except DamagedBundle as exc:
            v.problems.append(str(exc))
            continue
        if data is None:
            v.problems.append(f"missing: {name}")
        elif sha256_bytes(data) != entry["sha256"] or len(data) != entry["size"]:
            v.problems.append(f"changed: {name} (sha256 {sha256_bytes(data)[:16]}..., manifest "
                              f"says {entry['sha256'][:16]}...)")
        elif entry.get("rows") is not None and _rows_in(name, data) != entry["rows"]:
            v.problems.append(f"changed: {name} (rows differ from the manifest)")
        else:
            v.files_valid += 1
    for name in sorted(reader.names() - set(listed) - {MANIFEST}):
        v.problems.append(f"extra: {name} (not in the manifest)")


def _find_bundle(name: str, places: list[Path]) -> Path | None:
    for folder in places:
        candidate = folder / name
        if candidate.is_dir() or candidate.is_file():
            return candidate
    return None


def _walk_chain(bundle: Path, manifest: dict, places: list[Path], v: Verification) -> None:
    current, name, seen = manifest, bundle.name, {bundle.resolve()}
    while current.get("previous"):
        prev = current["previous"]
        v.links_total += 1
        path = _find_bundle(prev["bundle"], places)
        if path is None:
            v.problems.append(f"chain: previous bundle {prev['bundle']} of {name} not found in "
                              f"{', '.join(map(str, places))} (give its folder with --chain-dir)")
            return
        if path.resolve() in seen:
            v.problems.append(f"chain: {name} names {prev['bundle']}, which is already in the chain")
            return
        seen.add(path.resolve())
        if path.resolve().parent not in places:   # its own predecessor is most likely beside it
            places = places + [path.resolve().parent]
        try:
            reader = BundleReader(path)
            try:
                data = reader.read(MANIFEST)
            finally:
                reader.close()
        except DamagedBundle as exc:
            v.problems.append(f"chain: {exc}")
            return
        if data is None:
            v.problems.append(f"chain: {prev['bundle']} has no {MANIFEST}")
            return
        if sha256_bytes(data) == prev["manifest_sha256"]:
            v.links_valid += 1
            v.chain.append(f"{name} -> {prev['bundle']}: ok")
        else:
            v.problems.append(f"chain: {prev['bundle']}/{MANIFEST} has sha256 "
                              f"{sha256_bytes(data)[:16]}..., {name} recorded "
                              f"{prev['manifest_sha256'][:16]}...")
            v.chain.append(f"{name} -> {prev['bundle']}: BROKEN")
        try:
            current, name = json.loads(data), prev["bundle"]
        except ValueError:
            v.problems.append(f"chain: {prev['bundle']}/{MANIFEST} is not JSON")
            return


def verify_bundle(path: str | os.PathLike, chain_dirs=(),
                  expect_sha256: str | None = None) -> Verification:
    """Recompute every file's sha256, size and row count; walk the chain of previous bundles.

    Previous bundles are looked up by name in `chain_dirs` (a folder or several) and beside `path`.
    `expect_sha256`: the manifest's sha256 as recorded elsewhere (the run's output, a ticket); a
    manifest edited consistently verifies on its own, but not against that.
    """
    path = Path(path)
    v = Verification(path)
    try:
        reader = BundleReader(path)
    except DamagedBundle as exc:
        v.problems.append(str(exc))
        return v
    try:
        try:
            data = reader.read(MANIFEST)
        except DamagedBundle as exc:
            v.problems.append(str(exc))
            return v
        if data is None:
            v.problems.append(f"missing: {MANIFEST} (not a pamcorr bundle?)")
            return v
        v.manifest_sha256 = sha256_bytes(data)
        if expect_sha256 and v.manifest_sha256 != expect_sha256.strip().lower():
            v.problems.append(f"changed: {MANIFEST} has sha256 {v.manifest_sha256}, expected "
                              f"{expect_sha256.strip()}")
        try:
            manifest = json.loads(data)
        except ValueError:
            v.problems.append(f"changed: {MANIFEST} is not valid JSON")
            return v
        if manifest.get("format") != FORMAT:
            v.problems.append(f"{MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT}")
            return v
        _check_files(reader, manifest, v)
        from reports.manifest_sums import arithmetic_problems
        v.problems += arithmetic_problems(manifest)
        _check_integrity(reader, manifest, v)
    finally:
        reader.close()
    if isinstance(chain_dirs, (str, os.PathLike)):
        chain_dirs = [chain_dirs]
    places = [Path(d) for d in chain_dirs or ()] + [path.resolve().parent]
    _walk_chain(path, manifest, places, v)
    return v
