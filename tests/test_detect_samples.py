"""The shipped rules on real vendor samples, ingested through the real connectors.

Each source's samples (../shared/vendor-samples) go through its connector into a store, the real
correlate runs (and with it the detections), and the detections stored per action are compared
with what the samples show: the API calls, commands and logins that must be flagged, and the ones
that must not (failed calls, read-only calls, look-alike commands). Skipped when the samples are
absent.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from connectors.base import Options
from connectors.registry import get_connector
from correlate.detect.run import cached_rules, hits_sql
from correlate.engine import correlate
from correlate.ingest import ingest
from correlate.store import Store


def _detect(paths, source: str, **opts) -> list[dict]:
    """Every activity row of the samples with the set of event rules that flagged it."""
    store = Store(":memory:")
    for path in paths:
        for result in ingest(store, get_connector(source), None, [str(path)], Options(**opts)):
            assert result.balanced, result
    run = correlate(store)
    stored = store.query_dicts(
        "SELECT act_id, list(rule_id ORDER BY rule_id) AS rules FROM detections "
        "WHERE run_id = ? AND sequence_id IS NULL GROUP BY act_id", [run])
    # every event rule's matches, building blocks (login_failed ...) included: the same SQL
    # the run used, kept here because a building block's matches are not stored alone
    for statement in hits_sql(list(cached_rules(()))):
        store.con.execute(statement, {k: v for k, v in {"start": None, "end": None,
                                                        "run_id": run}.items()
                                      if f"${k}" in statement})
    rows = store.query_dicts(
        "SELECT a.act_id, a.event_id, a.account, a.action, a.detail, a.attrs, "
        "list(h.rule_id ORDER BY h.rule_id) FILTER (WHERE h.rule_id IS NOT NULL) AS rules "
        "FROM activity a LEFT JOIN det_hits h ON h.act_id = a.act_id "
        "GROUP BY ALL ORDER BY a.act_id")
    store.close()
    blocks = {r.id for r in cached_rules(()) if r.building_block}
    by_act = {r["act_id"]: set(r["rules"]) for r in stored}
    for r in rows:   # what was stored is exactly the matches less the building blocks
        assert by_act.get(r["act_id"], set()) == set(r["rules"] or ()) - blocks, r
    for r in rows:
        r["rules"] = set(r["rules"] or ())
        r["error"] = json.loads(r["attrs"]).get("error_code") if r["attrs"] else None
    return rows


def _by_action(rows) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for r in rows:
        out[r["action"]].append(r)
    return out


def _files(shared, folder, pattern):
    files = sorted((shared / folder).glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} under {shared / folder}")
    return files


@pytest.fixture(scope="module")
def cloudtrail(request):
    from tests.conftest import SHARED
    if not (SHARED / "invictus-aws-cloudtrail").is_dir():
        pytest.skip(f"vendor samples not found at {SHARED}")
    return _by_action(_detect(_files(SHARED, "invictus-aws-cloudtrail/CloudTrail", "*.json"),
                              "cloudtrail"))


# CloudTrail API calls of the Stratus Red Team samples that must be flagged (when they did not
# fail) by the named rule.
CLOUDTRAIL_MUST = {
    "cloudtrail.amazonaws.com:DeleteTrail": "cloudtrail_logging_stopped",
    "cloudtrail.amazonaws.com:PutEventSelectors": "cloudtrail_logging_stopped",
    "ec2.amazonaws.com:TerminateInstances": "aws_instances_terminated",
    "s3.amazonaws.com:DeleteBucket": "aws_bucket_or_database_deleted",
    "iam.amazonaws.com:AttachRolePolicy": "aws_iam_permissions_granted",
    "iam.amazonaws.com:PutRolePolicy": "aws_iam_permissions_granted",
    "iam.amazonaws.com:CreatePolicy": "aws_iam_policy_written",
    "iam.amazonaws.com:DeletePolicy": "aws_iam_policy_written",
    "s3.amazonaws.com:PutBucketPolicy": "aws_bucket_policy_changed",
    "ec2.amazonaws.com:AuthorizeSecurityGroupIngress": "aws_security_group_changed",
    "ec2.amazonaws.com:AuthorizeSecurityGroupEgress": "aws_security_group_changed",
    "ec2.amazonaws.com:RevokeSecurityGroupEgress": "aws_security_group_changed",
    "secretsmanager.amazonaws.com:GetSecretValue": "aws_secret_value_read",
    "ec2.amazonaws.com:DeleteFlowLogs": "aws_flow_logs_or_log_group_deleted",
    "logs.amazonaws.com:DeleteLogGroup": "aws_flow_logs_or_log_group_deleted",
}


@pytest.mark.parametrize("action", sorted(CLOUDTRAIL_MUST))
def test_cloudtrail_calls_flagged_unless_they_failed(cloudtrail, action):
    rule = CLOUDTRAIL_MUST[action]
    rows = cloudtrail[action]
    assert rows, f"the samples no longer hold {action}"
    ok = [r for r in rows if r["error"] is None]
    assert ok, f"every {action} in the samples failed"
    assert all(rule in r["rules"] for r in ok), [r["event_id"] for r in ok]
    assert not any(rule in r["rules"] for r in rows if r["error"] is not None)


def test_cloudtrail_failed_calls_are_never_flagged(cloudtrail):
    # the samples hold failed DeleteBucket (BucketNotEmpty), RevokeSecurityGroupEgress, every
    # StopLogging (TrailNotFoundException) and every GetPasswordData (UnauthorizedOperation):
    # a refused call changed nothing
    failed = [r for rows in cloudtrail.values() for r in rows if r["error"] is not None]
    assert {r["action"] for r in failed} >= {"s3.amazonaws.com:DeleteBucket",
                                             "cloudtrail.amazonaws.com:StopLogging",
                                             "ec2.amazonaws.com:GetPasswordData"}
    flagged = [(r["action"], r["rules"]) for r in failed if r["rules"]]
    assert flagged == []


def test_cloudtrail_ssm_reads_with_decryption(cloudtrail):
    rows = cloudtrail["ssm.amazonaws.com:GetParameter"]
    decrypted = [r for r in rows if json.loads(r["detail"]).get("withDecryption") is True
                 and r["error"] is None]
    assert decrypted and all("aws_ssm_parameter_decrypted" in r["rules"] for r in decrypted)
    plain = [r for r in rows if json.loads(r["detail"]).get("withDecryption") is not True]
    assert not any("aws_ssm_parameter_decrypted" in r["rules"] for r in plain)
    # GetParameters with long `names` lists: the whole request is stored (issue 17), so
    # withDecryption is seen however long the list is
    many = cloudtrail["ssm.amazonaws.com:GetParameters"]
    long = [r for r in many if len(r["detail"]) > 256]
    decrypted = [r for r in many if json.loads(r["detail"]).get("withDecryption") is True
                 and r["error"] is None]
    assert long and decrypted and any(r in decrypted for r in long)
    assert all(r["rules"] == {"aws_ssm_parameter_decrypted"} for r in decrypted)


def test_cloudtrail_look_alikes_and_reads_not_flagged(cloudtrail):
    # DescribeTrails / GetEventSelectors read the trail; ModifyInstanceAttribute here only
    # changes disableApiTermination (no userData); DeleteBucketLifecycle is not a bucket
    # deletion
    for action in ("cloudtrail.amazonaws.com:DescribeTrails",
                   "cloudtrail.amazonaws.com:GetEventSelectors",
                   "cloudtrail.amazonaws.com:StartLogging", "cloudtrail.amazonaws.com:CreateTrail",
                   "ec2.amazonaws.com:ModifyInstanceAttribute",
                   "s3.amazonaws.com:DeleteBucketLifecycle", "s3.amazonaws.com:GetBucketPolicy",
                   "iam.amazonaws.com:GetRolePolicy", "kms.amazonaws.com:Decrypt",
                   "secretsmanager.amazonaws.com:DescribeSecret"):
        rows = cloudtrail[action]
        assert rows, action
        assert not any(r["rules"] for r in rows), (action, [r["rules"] for r in rows])


def test_cloudtrail_run_instances_flagged_only_with_an_instance_profile(cloudtrail):
    # the whole request is stored (issue 17), so the role passed to an instance is seen
    rows = [r for r in cloudtrail["ec2.amazonaws.com:RunInstances"] if r["error"] is None]
    with_role = [r for r in rows if "iamInstanceProfile" in (r["detail"] or "")]
    assert with_role and all("aws_role_passed_to_compute" in r["rules"] for r in with_role)
    assert not any(r["rules"] for r in rows if r not in with_role)


def test_cloudtrail_read_only_describe_calls_never_flagged(cloudtrail):
    flagged = {a for a, rows in cloudtrail.items()
               if a.split(":")[1].startswith(("Describe", "List")) and any(r["rules"] for r in rows)}
    assert flagged == set()


@pytest.fixture(scope="module")
def auditd():
    from tests.conftest import SHARED
    if not (SHARED / "go-libaudit").is_dir():
        pytest.skip(f"vendor samples not found at {SHARED}")
    files = (_files(SHARED, "go-libaudit", "*.log") + _files(SHARED, "laurel-auditd", "*.txt")
             + _files(SHARED, "laurel-auditd", "*.json"))
    return _detect(files, "auditd")


def test_auditd_account_changes_logins_and_plain_commands(auditd):
    by = _by_action(auditd)
    assert by["user.add"] and by["group.add"]
    assert all(r["rules"] == {"local_account_changed_audit"} for r in by["user.add"] + by["group.add"])
    assert by["login.failed"] and all(r["rules"] == {"login_failed"} for r in by["login.failed"])
    assert by["session.start"] and all(r["rules"] == {"login_succeeded"}
                                       for r in by["session.start"])
    # add_rule is an audit rule being added, not removed
    assert by["audit.config_change"] and not any(r["rules"] for r in by["audit.config_change"])
    # EXECVE and sudo commands of the samples (echo, sed, grep, dpkg -l, whoami, metricbeat...)
    commands = by["exec"] + by["sudo.command"]
    assert len(commands) > 15 and not any(r["rules"] for r in commands), \
        [(r["detail"], r["rules"]) for r in commands if r["rules"]]


@pytest.fixture(scope="module")
def system_auth():
    from tests.conftest import SHARED
    if not (SHARED / "elastic-system-auth").is_dir():
        pytest.skip(f"vendor samples not found at {SHARED}")
    return _detect(_files(SHARED, "elastic-system-auth", "*.log"), "syslog", tz="UTC")


def test_system_auth_logins_and_sudo(system_auth):
    by = _by_action(system_auth)
    assert by["login.failed"] and all(r["rules"] == {"login_failed"}
                                          for r in by["login.failed"])
    assert by["session.start"] and all(r["rules"] == {"login_succeeded"}
                                       for r in by["session.start"])
    # sudo cat / cp of /var/log/secure read the log; they do not wipe it
    sudo = {r["detail"]: r["rules"] for r in by["sudo.command"]}
    assert "/bin/cat /var/log/secure" in sudo and "/bin/cp /var/log/secure ." in sudo
    assert not any(sudo.values()), sudo
    assert not any(r["rules"] for r in by["sudo.denied"])


def test_vault_kv_reads_flagged_and_others_not():
    from tests.conftest import SHARED
    path = SHARED / "elastic-hashicorp_vault" / "test-audit.log"
    if not path.is_file():
        pytest.skip(f"vendor sample not found: {path}")
    by = _by_action(_detect([path], "vault"))
    reads = by["read"]
    assert len(reads) == 2 and all(r["rules"] == {"vault_secret_read"} for r in reads)
    for action in ("update", "help"):       # sys/capabilities-self, a denied PKI issue, help
        assert by[action] and not any(r["rules"] for r in by[action]), action


def test_kubernetes_reads_not_flagged():
    from tests.conftest import SHARED
    path = SHARED / "elastic-kubernetes" / "test-audit.log"
    if not path.is_file():
        pytest.skip(f"vendor sample not found: {path}")
    rows = _detect([path], "k8s")
    # the sample holds a service account's `get pods` and a health check: nothing risky, and a
    # service account's API call is not an interactive session
    assert {r["action"] for r in rows} >= {"get pods"}
    assert not any(r["rules"] for r in rows)
