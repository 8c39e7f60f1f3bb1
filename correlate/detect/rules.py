"""Load detection rules (Sigma files) through an explicit registry, check them, compile them.

A rule file holds one Sigma rule: `name` is the rule id and must equal the file name; `level`
is the severity; `tags` carry the ATT&CK technique (attack.tNNNN); a `pamcorr:` block gives the
action `class` and `examples` (`match` / `no_match` activity rows, run by the tests). Sigma
correlation rules (temporal_ordered, temporal, event_count, value_count) are sequences over
other rules' matches (sequences.py). See docs/detections.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from typing import TYPE_CHECKING

import yaml

from correlate.detect.views import View, view_for
from correlate.errors import InputError

# pySigma takes 0.12 s to import, and every pamcorr command imports this module (CLASSES,
# SEVERITIES): it is imported when rules are loaded, not here.
if TYPE_CHECKING:
    from sigma.correlations import SigmaCorrelationRule

    from correlate.detect.backend import DuckDBBackend

CLASSES = ("destructive", "log_tamper", "priv_escalation", "identity_change", "policy_change",
           "secret_access", "persistence", "exfiltration", "credential_attack", "sequence")
SEVERITIES = ("info", "low", "medium", "high", "critical")
_LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high",
           "critical": "critical"}
_ID = re.compile(r"[a-z][a-z0-9_]{2,79}")
SEQUENCE_TYPES = ("temporal_ordered", "temporal", "event_count", "value_count")

# The shipped rules, by id (= file name in correlate/detect/rules/). Explicit, so a rule file
# that is not listed here is never loaded by accident (a test checks both ways).
SHIPPED = (
    # log_tamper
    "auditctl_rules_deleted", "auditd_stopped", "shell_history_cleared",
    "cloudtrail_logging_stopped", "vault_audit_disabled", "audit_rules_removed_auditd",
    "log_files_wiped", "journal_vacuumed", "aws_guardduty_disabled", "aws_config_disabled",
    "aws_flow_logs_or_log_group_deleted", "k8s_audit_policy_changed",
    # destructive
    "recursive_delete_of_data", "sql_drop_or_truncate", "disk_formatted_or_overwritten",
    "aws_instances_terminated", "aws_bucket_or_database_deleted",
    "k8s_namespace_or_volume_deleted", "kubectl_delete_namespace_or_volume",
    "vault_secret_destroyed",
    # priv_escalation
    "root_shell_via_sudo", "setuid_or_capability_set", "sudoers_edited",
    "aws_iam_permissions_granted", "aws_iam_self_escalation", "aws_role_passed_to_compute",
    "k8s_cluster_admin_bound", "kubectl_bind_cluster_admin", "k8s_pod_exec",
    "vault_root_token_generated", "service_account_shell",
    # identity_change
    "local_account_changed", "local_account_changed_audit",
    "aws_iam_user_or_credentials_changed", "k8s_serviceaccount_token_created",
    # policy_change
    "aws_iam_policy_written", "aws_bucket_policy_changed", "aws_kms_key_policy_or_state_changed",
    "aws_security_group_changed", "firewall_rules_changed", "vault_policy_written",
    "k8s_rbac_changed",
    # secret_access
    "k8s_secret_read", "vault_secret_read", "aws_secret_value_read", "aws_ssm_parameter_decrypted",
    "aws_ec2_password_data_read", "shadow_file_read",
    # persistence
    "cron_modified", "systemd_unit_added", "shell_rc_modified", "ssh_authorized_keys_modified",
    "aws_compute_code_or_userdata_changed",
    # exfiltration
    "network_egress_tool",
    # judged actions (pamcorr/verdict)
    "activity_after_revocation",
    # credential_attack (building blocks of the login sequences)
    "login_failed", "login_succeeded",
    # sequences
    "seq_secret_then_egress", "seq_shadow_read_then_egress", "seq_root_shell_then_audit_off",
    "seq_root_shell_then_auditd_stopped",
    "seq_root_shell_then_history_cleared", "seq_root_shell_then_logs_wiped",
    "seq_destructive_on_many_hosts", "seq_login_failures_burst", "seq_failed_logins_then_success",
    "seq_new_account_then_login", "seq_account_command_then_login",
)


@dataclass(frozen=True)
class Rule:
    """One loaded rule: metadata, and either an event condition or a sequence."""

    id: str
    title: str
    cls: str
    severity: str
    description: str
    attack: tuple[str, ...]
    path: str
    sha256: str
    view: View | None = None
    sql: str | None = None                    # condition over the view's rows (alias a)
    sequence: dict = field(default_factory=dict)   # type, rules, group_by, seconds, count, field
    examples: dict = field(default_factory=dict)
    # matches only feed sequences (a single failed login is no finding; five in a row are)
    building_block: bool = False

    @property
    def is_sequence(self) -> bool:
        return bool(self.sequence)


def shipped_dir() -> Path:
    return Path(str(resources.files("correlate.detect") / "rules"))


def rule_files(user_dirs: tuple[str, ...] = ()) -> list[Path]:
    """The shipped rules in registry order, then every *.yml / *.yaml of each user folder."""
    files = [shipped_dir() / f"{rid}.yml" for rid in SHIPPED]
    for folder in user_dirs:
        d = Path(folder)
        if not d.is_dir():
            raise InputError("rule folder not found", str(d))
        files += sorted(p for p in d.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    return files


def parse_yaml(text: str) -> list:
    """The YAML documents of a rule file. libyaml's loader (CSafeLoader) when PyYAML has it:
    the pure-Python one took 0.12 s of the 0.15 s that loading the 68 shipped rules cost, on
    every start of pamcorr; both build the documents with the same safe constructor. A file
    libyaml refuses is parsed again by the pure loader, whose error (with the offending line
    quoted) is the one reported, as before."""
    fast = getattr(yaml, "CSafeLoader", None) if yaml.__with_libyaml__ else None
    if fast is not None:
        try:
            return list(yaml.load_all(text, Loader=fast))
        except yaml.YAMLError:
            pass
    return list(yaml.load_all(text, Loader=yaml.SafeLoader))


def load_rules(user_dirs: tuple[str, ...] = ()) -> list[Rule]:
    """Every rule, checked and compiled; InputError naming the file for any problem."""
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaRule

    from correlate.detect.backend import DuckDBBackend
    parsed: list[tuple[Path, str, object]] = []
    for path in rule_files(user_dirs):
        try:
            text = path.read_text(encoding="utf-8")
            docs = parse_yaml(text)
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read rule: {exc}", str(path)) from None
        except yaml.YAMLError as exc:
            raise InputError(f"not YAML: {' '.join(str(exc).split())}", str(path)) from None
        if len(docs) != 1 or not isinstance(docs[0], dict):
            raise InputError("a rule file holds exactly one Sigma rule", str(path))
        kind = SigmaCorrelationRule if "correlation" in docs[0] else SigmaRule
        try:
            rule = kind.from_dict(docs[0])
        except SigmaError as exc:
            raise InputError(f"not a valid Sigma rule: {exc}", str(path)) from None
        parsed.append((path, text, rule))
    ids = [_rule_id(path, r) for path, _, r in parsed]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise InputError(f"rule id defined more than once: {', '.join(sorted(dupes))}")
    backend = DuckDBBackend()
    rules = [_compile(path, text, r, backend) for path, text, r in parsed]
    known = {r.id for r in rules}
    for r in rules:
        missing = [m for m in r.sequence.get("rules", ()) if m not in known]
        if missing:
            raise InputError(f"sequence refers to unknown rule(s): {', '.join(missing)}", r.path)
    return rules


def _rule_id(path: Path, rule) -> str:
    rid = rule.name
    if not rid or not _ID.fullmatch(rid):
        raise InputError("a rule needs `name:` (its id: lower case, digits, _)", str(path))
    if rid != path.stem:
        raise InputError(f"rule id {rid!r} does not match the file name {path.name!r}", str(path))
    return rid


def _meta(path: Path, rule) -> dict:
    custom = (getattr(rule, "custom_attributes", None) or {}).get("pamcorr") or {}
    if not isinstance(custom, dict):
        raise InputError("`pamcorr:` must be a mapping (class, examples)", str(path))
    cls = custom.get("class")
    if cls not in CLASSES:
        raise InputError(f"pamcorr.class must be one of {', '.join(CLASSES)}, not {cls!r}",
                         str(path))
    level = rule.level.name.lower() if rule.level is not None else None
    if level not in _LEVELS:
        raise InputError("a rule needs `level:` (informational, low, medium, high, critical)",
                         str(path))
    if not (rule.description or "").strip():
        raise InputError("a rule needs a `description:` saying why it matters", str(path))
    examples = custom.get("examples") or {}
    block = custom.get("building_block", False)
    if not isinstance(block, bool):
        raise InputError("pamcorr.building_block must be true or false", str(path))
    return {"cls": cls, "severity": _LEVELS[level], "examples": examples,
            "description": " ".join(rule.description.split()), "building_block": block}


def _compile(path: Path, text: str, rule, backend: DuckDBBackend) -> Rule:
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaRule

    from correlate.detect.backend import condition_sql, map_fields
    rid = _rule_id(path, rule)
    meta = _meta(path, rule)
    attack = tuple(f"{t.name.upper()}" for t in rule.tags or ()
                   if t.namespace == "attack" and re.fullmatch(r"t\d{4}(\.\d{3})?", t.name))
    common = dict(id=rid, title=rule.title, cls=meta["cls"], severity=meta["severity"],
                  description=meta["description"], attack=attack, path=str(path),
                  sha256=hashlib.sha256(text.encode()).hexdigest(), examples=meta["examples"],
                  building_block=meta["building_block"])
    if isinstance(rule, SigmaCorrelationRule):
        return Rule(**common, sequence=_sequence(path, rule))
    if not isinstance(rule, SigmaRule):
        raise InputError(f"unsupported rule type {type(rule).__name__}", str(path))
    ls = rule.logsource
    try:
        view = view_for(ls.product, ls.category, ls.service)
    except KeyError as exc:
        raise InputError(str(exc.args[0]), str(path)) from None
    try:
        raw = condition_sql(rule, backend)
    except (SigmaError, ValueError) as exc:
        raise InputError(f"cannot compile: {exc}", str(path)) from None
    try:
        sql = map_fields(raw, view.resolve)
    except KeyError as exc:
        raise InputError(f"field {exc.args[0]!r} is not mapped for logsource "
                         f"{'/'.join(p or '-' for p in view.key)} (docs/detections.md lists "
                         "the fields)", str(path)) from None
    return Rule(**common, view=view, sql=sql)


def _sequence(path: Path, rule: SigmaCorrelationRule) -> dict:
    kind = rule.type.name.lower() if hasattr(rule.type, "name") else str(rule.type)
    if kind not in SEQUENCE_TYPES:
        raise InputError(f"correlation type {kind} is not supported ({', '.join(SEQUENCE_TYPES)})",
                         str(path))
    refs = [str(r.reference) for r in rule.rules]
    if not rule.timespan:
        raise InputError("a sequence needs `timespan:`", str(path))
    group_by = list(rule.group_by or [])
    allowed = {"account", "target", "session_id", "actor", "approval_id", "detail", "source"}
    bad = [g for g in group_by if g not in allowed]
    if bad:
        raise InputError(f"group-by field(s) {', '.join(bad)} not supported (use "
                         f"{', '.join(sorted(allowed))})", str(path))
    cond = rule.condition
    count = int(cond.count) if cond is not None and cond.count is not None else len(refs)
    op = cond.op.name if cond is not None else "GTE"
    if op not in ("GTE", "GT"):
        raise InputError("a sequence condition must be gte or gt", str(path))
    if op == "GT":
        count += 1
    fieldref = getattr(cond, "fieldref", None) if cond is not None else None
    if kind == "value_count" and fieldref not in allowed:
        raise InputError(f"value_count needs condition.field, one of {', '.join(sorted(allowed))}",
                         str(path))
    return {"type": kind, "rules": refs, "group_by": group_by, "seconds": int(rule.timespan.seconds),
            "count": count, "field": fieldref}
