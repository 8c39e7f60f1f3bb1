"""Every detection rule parses, is registered under its file name, and its examples hold.

Each event rule's `match` examples must match and its `no_match` examples must not, evaluated
by the same SQL the engine runs (the rule's view filter and compiled condition) over activity
rows built from the examples.
"""

from __future__ import annotations

import json
import re

import duckdb
import pytest
import yaml

from correlate.detect.rules import CLASSES, SHIPPED, load_rules, shipped_dir
from correlate.detect.views import VIEWS
from correlate.errors import InputError

RULES = load_rules()
EVENT_RULES = [r for r in RULES if not r.is_sequence]
DEFAULTS = {"source": "generic", "account": "alice", "target": "web-01", "actor": None,
            "action": "exec", "detail": None, "session_id": None, "actor_kind": None,
            "approval_ref": None, "read_only": None, "attrs": None, "outcome": None}


def _rows(examples: list[dict]) -> list[dict]:
    out = []
    for i, ex in enumerate(examples):
        row = {**DEFAULTS, **ex, "act_id": i}
        if isinstance(row["attrs"], dict):
            row["attrs"] = json.dumps(row["attrs"])
        out.append(row)
    return out


def matching(rule, examples: list[dict]) -> list[int]:
    con = duckdb.connect()
    cols = ["act_id", *DEFAULTS]
    con.execute("CREATE TABLE a (act_id INTEGER, source VARCHAR, account VARCHAR, target VARCHAR, "
                "actor VARCHAR, action VARCHAR, detail VARCHAR, session_id VARCHAR, "
                "actor_kind VARCHAR, approval_ref VARCHAR, read_only BOOLEAN, attrs VARCHAR, "
                "outcome VARCHAR)")
    con.executemany(f"INSERT INTO a ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [[r[c] for c in cols] for r in _rows(examples)])
    # `judged: true` marks an action the run judged as pamcorr/verdict rules read it (det_judged)
    con.execute("CREATE TABLE det_judged (act_id INTEGER)")
    con.execute("INSERT INTO det_judged SELECT unnest(?::INTEGER[])",
                [[r["act_id"] for r in _rows(examples) if r.get("judged")]])
    return [i for (i,) in con.execute(
        f"SELECT act_id FROM a WHERE ({rule.view.where}) AND ({rule.sql}) ORDER BY 1").fetchall()]


def test_registry_lists_exactly_the_rule_files():
    files = sorted(p.stem for p in shipped_dir().glob("*.yml"))
    assert files == sorted(SHIPPED)
    assert [r.id for r in RULES] == list(SHIPPED)


def test_every_class_has_rules_and_every_rule_has_what_a_reader_needs():
    assert {r.cls for r in RULES} == set(CLASSES)
    for r in RULES:
        assert r.cls in CLASSES and r.title and r.description and r.attack, r.id


PROCESS, CLOUDTRAIL, K8S, VAULT = (("linux", "process_creation", None), ("aws", None, "cloudtrail"),
                                   ("kubernetes", None, "audit"), ("hashicorp", None, "vault"))
ACTIVITY, DATABASE = ("pamcorr", None, "activity"), ("pamcorr", "database", None)
# Issue 10 section 1: each class has rules for every source that can show it. (PIM activations
# and CyberArk retrievals are approvals, not activity rows: no event rule can read them.)
COVERAGE = {
    "destructive": {PROCESS, DATABASE, CLOUDTRAIL, K8S, VAULT},
    "log_tamper": {PROCESS, CLOUDTRAIL, VAULT, ACTIVITY},
    "priv_escalation": {PROCESS, CLOUDTRAIL, K8S, VAULT, ACTIVITY},
    "identity_change": {PROCESS, CLOUDTRAIL, K8S, ACTIVITY},
    "policy_change": {PROCESS, CLOUDTRAIL, K8S, VAULT},
    "secret_access": {PROCESS, CLOUDTRAIL, K8S, VAULT},
    "persistence": {PROCESS, CLOUDTRAIL},
    "credential_attack": {("linux", "authentication", None)},
}


@pytest.mark.parametrize("cls", sorted(COVERAGE))
def test_every_class_covers_its_sources(cls):
    assert {r.view.key for r in EVENT_RULES if r.cls == cls} >= COVERAGE[cls]


def test_sequences_name_event_rules_and_a_bounded_window():
    events = {r.id for r in EVENT_RULES}
    for r in RULES:
        if r.is_sequence:
            assert set(r.sequence["rules"]) <= events and 0 < r.sequence["seconds"] <= 86400, r.id


def test_regexes_are_re2_and_anchor_on_a_word():
    # RE2 (DuckDB's regexp_matches) has no lookaround and no backreferences
    for r in EVENT_RULES:
        for pattern in re.findall(r"regexp_matches\([^,]+, '((?:[^']|'')*)'\)", r.sql):
            assert not re.search(r"\(\?<?[=!]|\\[1-9]", pattern), (r.id, pattern)


@pytest.mark.parametrize("rule", EVENT_RULES, ids=lambda r: r.id)
def test_rule_examples(rule):
    ex = rule.examples
    assert ex.get("match") and ex.get("no_match"), f"{rule.id}: needs match and no_match examples"
    assert matching(rule, ex["match"]) == list(range(len(ex["match"])))
    assert matching(rule, ex["no_match"]) == []


def test_every_view_is_served_by_a_rule_or_documented():
    used = {r.view.key for r in EVENT_RULES}
    assert used <= {v.key for v in VIEWS}


def test_docs_list_every_view_and_field():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "detections.md").read_text()
    for v in VIEWS:
        assert "/".join(p for p in v.key if p) in text.replace("`", ""), v.key
        for name in v.fields:
            assert f"`{name}`" in text, name
        for prefix in v.prefixes:
            assert f"`{prefix}" in text, prefix


def test_catalogue_lists_every_shipped_rule():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "detection-rules.md").read_text()
    assert [rid for rid in SHIPPED if f"`{rid}`" not in text] == []


class _CountingSafeLoader(yaml.SafeLoader):
    made = 0

    def __init__(self, stream):
        type(self).made += 1
        super().__init__(stream)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
def test_rules_are_parsed_by_libyaml_not_the_pure_python_loader(monkeypatch):
    # the pure loader cost 0.12 s of the 0.15 s of loading the shipped rules, on every start
    monkeypatch.setattr(yaml, "SafeLoader", _CountingSafeLoader)
    _CountingSafeLoader.made = 0
    assert len(load_rules()) == len(SHIPPED)
    assert _CountingSafeLoader.made == 0


def test_rules_load_the_same_without_libyaml(monkeypatch):
    monkeypatch.setattr(yaml, "__with_libyaml__", False)
    monkeypatch.setattr(yaml, "SafeLoader", _CountingSafeLoader)
    _CountingSafeLoader.made = 0
    assert load_rules() == RULES
    assert _CountingSafeLoader.made == len(SHIPPED)


@pytest.mark.parametrize("text", ["title: [a, b\n", "title: x\n  name: y\n: z\n",
                                  "title: 'open\n", "\ttitle: x\n", "title: *nope\n",
                                  "title: !!python/object:os.system x\n"])
def test_bad_yaml_is_reported_as_the_pure_loader_words_it(tmp_path, text):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "bad_yaml.yml").write_text(text)
    with pytest.raises(yaml.YAMLError) as pure:
        list(yaml.load_all(text, Loader=yaml.SafeLoader))
    with pytest.raises(InputError) as err:
        load_rules((str(folder),))
    path = folder / "bad_yaml.yml"
    assert str(err.value) == f"{path}: not YAML: {' '.join(str(pure.value).split())}"
    assert err.value.file == str(path)


def test_pysigma_is_imported_only_to_load_rules():
    """Every pamcorr command imports correlate.detect.rules (CLASSES, SEVERITIES); pySigma,
    0.12 s to import, is imported by load_rules only."""
    import subprocess
    import sys
    code = ("import sys, correlate.cli, correlate.engine, reports.gaps\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'sigma'], 'sigma imported'\n"
            "from correlate.detect.rules import load_rules\n"
            "assert load_rules() and 'sigma.rule' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
