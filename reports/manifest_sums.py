"""The evidence manifest's own arithmetic, checked by `pamcorr verify`: every input file and every
source total balances (read = accepted + ignored + quarantined + duplicates), the source totals
are the sums of their files, and the findings and detections counts are the rows written.

A manifest edited consistently (numbers changed, the bundle re-hashed) passes the hash checks;
these catch an edit that makes the numbers disagree with each other."""

from __future__ import annotations

TERMS = ("accepted", "ignored", "quarantined", "duplicates")
SUMMED = ("read",) + TERMS
# the manifest's counts and the files whose row counts they are
COUNTED = {"findings": ("findings.csv", "findings.jsonl"),
           "detections": ("detections.csv", "detections.jsonl")}


def _number(entry: dict, key: str):
    value = entry.get(key, 0 if key == "ignored" else None)   # older manifests: no ignored
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _balance(where: str, entry: dict) -> str | None:
    got = {k: _number(entry, k) for k in SUMMED}
    bad = [k for k, v in got.items() if v is None]
    if bad:
        return f"arithmetic: {where}: {', '.join(bad)} not a whole number"
    total = sum(got[k] for k in TERMS)
    if got["read"] == total:
        return None
    terms = " + ".join(f"{k} {got[k]:,}" for k in TERMS)
    return f"arithmetic: {where}: read {got['read']:,} != {terms} (= {total:,})"


def _name(entry: dict) -> str:
    return " ".join(str(entry.get(k)) for k in ("source", "kind", "file") if entry.get(k))


def arithmetic_problems(manifest: dict) -> list[str]:
    """One line per manifest entry whose numbers do not add up, naming the entry."""
    problems = []
    inputs = [e for e in manifest.get("inputs") or [] if isinstance(e, dict)]
    sums: dict[tuple, dict] = {}
    for i, entry in enumerate(inputs):
        problem = _balance(f"inputs[{i}] ({_name(entry)})", entry)
        if problem:
            problems.append(problem)
            continue
        s = sums.setdefault((entry.get("source"), entry.get("kind")), dict.fromkeys(SUMMED, 0))
        s["files"] = s.get("files", 0) + 1
        for k in SUMMED:
            s[k] += _number(entry, k)
    sources = (manifest.get("completeness") or {}).get("sources") or []
    for i, entry in enumerate(e for e in sources if isinstance(e, dict)):
        where = f"completeness.sources[{i}] ({_name(entry)})"
        problem = _balance(where, entry)
        if problem:
            problems.append(problem)
            continue
        files = sums.get((entry.get("source"), entry.get("kind")))
        if files is None:
            problems.append(f"arithmetic: {where}: no input file of this source and kind")
            continue
        for k in ("files",) + SUMMED:
            if entry.get(k, 0 if k == "ignored" else None) != files.get(k):
                problems.append(f"arithmetic: {where}: {k} {entry.get(k)} but its input files "
                                f"sum to {files.get(k)}")
    rows = {o.get("path"): o.get("rows") for o in manifest.get("outputs") or []
            if isinstance(o, dict)}
    for key, names in COUNTED.items():
        for name in names:
            if key in manifest and rows.get(name) is not None and rows[name] != manifest[key]:
                problems.append(f"arithmetic: {key} {manifest[key]} but {name} holds "
                                f"{rows[name]} row(s)")
    return problems
