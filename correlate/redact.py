"""Secrets in command lines are redacted before they are stored (RE2 patterns, applied in SQL).

The shapes live in `secret_patterns.toml` (package data), grouped by family. Each family's rules
are joined into as few regexes as RE2's nine replacement groups allow: rules with the same
secret share one alternation of what they keep, the others are packed side by side. A cheap
prefilter (every rule's anchor) skips the text that cannot hold any of them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

VALUE = "<VALUE>"
MAX_GROUPS = 9          # RE2 rewrites know \0 to \9


@dataclass(frozen=True)
class Rule:
    """One documented shape: `keep` stays, `secret` is masked, `after` stays."""

    id: str
    family: str
    doc: str
    anchor: str
    keep: str
    secret: str
    after: str = ""
    examples: tuple = ()
    keeps: tuple = ()


def _groups(fragment: str) -> int:
    """Capturing groups in an RE2 fragment (Python's parser agrees on these patterns)."""
    return re.compile(fragment).groups


@lru_cache(maxsize=1)
def _data() -> dict:
    text = resources.files("correlate").joinpath("secret_patterns.toml").read_text("utf-8")
    return tomllib.loads(text)


@lru_cache(maxsize=1)
def rules() -> tuple[Rule, ...]:
    """The rules of secret_patterns.toml, checked: no groups in `keep`, no global flags."""
    out = []
    for r in _data()["rule"]:
        rule = Rule(r["id"], r["family"], r["doc"], r["anchor"], r["keep"], r["secret"],
                    r.get("after", ""), tuple(map(tuple, r.get("examples", ()))),
                    tuple(r.get("keeps", ())))
        for part in (rule.anchor, rule.keep, rule.secret, rule.after):
            if part.startswith("(?i)") or "|(?i)" in part:
                raise ValueError(f"secret rule {rule.id}: use (?i:...), not a global flag")
        if _groups(rule.keep) or _groups(rule.after):
            raise ValueError(f"secret rule {rule.id}: keep/after must not capture")
        out.append(rule)
    return tuple(out)


MASK = _data()["mask"]


def _packed(value_groups: int) -> list[list[tuple[list[str], str, str]]]:
    """Rules grouped into passes: within a family, rules with the same secret and `after` share
    one alternation of keeps; a family's groups are packed side by side up to MAX_GROUPS."""
    merged: dict[tuple[str, str, str], list[str]] = {}
    for r in rules():
        merged.setdefault((r.family, r.secret, r.after), []).append(r.keep)
    passes, current, family, used = [], [], None, 0
    for (fam, secret, after), keeps in merged.items():
        need = ((1 if any(keeps) else 0) + (1 if after else 0)
                + (value_groups if secret == VALUE else _groups(secret)))
        if current and (fam != family or used + need > MAX_GROUPS):
            passes.append(current)
            current, used = [], 0
        family = fam
        current.append((keeps, secret, after))
        used += need
    return passes + [current] if current else passes


def _passes(json: bool) -> list[tuple[str, str]]:
    """(regex, replacement) per pass over the text, in file order of the families.

    The replacement is every group kept before the secret (keeps, opening quotes), the mask,
    then every group kept after it (closing quotes, groups of the secret, `after`): in one
    match only one alternative's groups are set, the others rewrite to nothing."""
    value = _data()["value"]["json" if json else "plain"]
    value_groups = _groups(value)
    if value_groups % 2:
        raise ValueError("secret_patterns.toml: <VALUE> groups come in (open, close) pairs")
    out = []
    for group in _packed(value_groups):
        parts, before, behind, n = [], [], [], 0
        for keeps, secret, after in group:
            keep = "|".join(f"(?:{k})" for k in keeps if k)
            if keep and "" in keeps:
                keep += "|"     # a rule that keeps nothing shares the secret
            if keep:
                n += 1
                before.append(n)
            if secret == VALUE:
                before.extend(range(n + 1, n + value_groups, 2))
                behind.extend(range(n + 2, n + value_groups + 1, 2))
                n += value_groups
                body = value
            else:
                behind.extend(range(n + 1, n + 1 + _groups(secret)))
                n += _groups(secret)
                body = secret
            if after:
                n += 1
                behind.append(n)
            parts.append((f"({keep})" if keep else "") + body + (f"({after})" if after else ""))
        regex = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
        repl = "".join(f"\\{i}" for i in before) + MASK + "".join(f"\\{i}" for i in behind)
        out.append((regex, repl))
    return out


def prefilter() -> str:
    """A text matching none of the anchors holds no secret shape: it is stored untouched."""
    return "|".join(f"(?:{r.anchor})" for r in rules())


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@lru_cache(maxsize=None)
def redact_sql(col: str, json: bool = False) -> str:
    """SQL expression: `col` with every secret shape masked. `json`: the column holds JSON text
    (attrs), which stays valid JSON. Cheap prefilter first."""
    expr = col
    for pattern, repl in _passes(json):
        expr = f"regexp_replace({expr}, {_lit(pattern)}, {_lit(repl)}, 'g')"
    return f"(CASE WHEN regexp_matches({col}, {_lit(prefilter())}) THEN {expr} ELSE {col} END)"


def families() -> dict[str, list[str]]:
    """Family -> rule ids, in file order (README lists the families)."""
    out: dict[str, list[str]] = {}
    for r in rules():
        out.setdefault(r.family, []).append(r.id)
    return out
