"""Which store rows and columns each Sigma logsource reads: one view per logsource.

A view is a row filter over the run's activity (alias `a`) and a map from Sigma field names to
SQL expressions over it. Field names follow the log source's own vocabulary (SigmaHQ's:
process_creation `CommandLine`, CloudTrail `eventName`, Kubernetes `objectRef.resource`), so
rules written for those sources read the same here. A rule naming a field its view does not map
is refused when the rules are loaded. docs/detections.md lists every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def attr(key: str) -> str:
    """SQL: the string value of attrs.<key> (attrs is a JSON object as text)."""
    return f"json_extract_string(a.attrs, '$.\"{key}\"')"


def _json_path(column: str, dotted: str) -> str:
    """SQL: a value inside a JSON text column; NULL when the text is not JSON (CloudTrail's
    requestParameters are cut at 256 characters, and a cut document must not stop the run)."""
    parts = ".".join(f'"{p}"' for p in dotted.split("."))
    return f"try(json_extract_string({column}, '$.{parts}'))"


COMMON = {
    "account": "a.account", "target": "a.target", "actor": "a.actor", "action": "a.action",
    "detail": "a.detail", "source": "a.source", "session_id": "a.session_id",
    "actor_kind": "a.actor_kind", "approval_ref": "a.approval_ref", "outcome": "a.outcome",
}
# Actions whose detail is a command line (auditd EXECVE, sudo, Teleport, CyberArk PSM, generic).
COMMAND_ACTIONS = ("exec", "sudo.command", "sudo", "session.command", "ssh.command",
                   "psm.command", "kubectl exec", "command")
LOGIN_ACTIONS = ("session.start", "ssh.login_failed", "login.failed", "su", "user.login")
QUERY_ACTIONS = ("psm.sql", "db.query", "db.session.query")


@dataclass(frozen=True)
class View:
    """The rows of one logsource and its field names."""

    key: tuple[str | None, str | None, str | None]   # (product, category, service)
    where: str
    fields: dict[str, str]
    prefixes: dict[str, str] = field(default_factory=dict)   # "requestParameters." -> column

    def resolve(self, name: str) -> str:
        if name in self.fields:
            return self.fields[name]
        if name in COMMON:
            return COMMON[name]
        if name.startswith("attrs."):
            return attr(name[len("attrs."):])
        for prefix, column in self.prefixes.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return _json_path(column, name[len(prefix):])
        raise KeyError(name)


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


VIEWS: tuple[View, ...] = (
    View(("linux", "process_creation", None), f"a.action IN {_in(COMMAND_ACTIONS)}", {
        "CommandLine": "a.detail",
        "Image": f"coalesce({attr('exe')}, split_part(ltrim(a.detail), ' ', 1))",
        "User": "a.account", "CurrentDirectory": attr("cwd"), "LogonId": "a.session_id",
    }),
    View(("linux", "authentication", None), f"a.action IN {_in(LOGIN_ACTIONS)}", {
        "User": "a.account", "SourceIp": f"coalesce({attr('source_ip')}, {attr('src_ip')})",
        # what the source says (activity.outcome), else from the action's name
        "Outcome": ("coalesce(nullif(a.outcome, 'unknown'), CASE WHEN a.action IN "
                    "('ssh.login_failed', 'login.failed') THEN 'failure' ELSE 'success' END)"),
    }),
    View(("aws", None, "cloudtrail"), "a.source = 'cloudtrail'", {
        "eventSource": "split_part(a.action, ':', 1)",
        "eventName": "split_part(a.action, ':', 2)",
        "userIdentity.type": attr("identity_type"), "userName": "a.account",
        "errorCode": attr("error_code"), "sourceIPAddress": attr("source_ip"),
        "awsRegion": attr("region"), "recipientAccountId": "a.target",
        "readOnly": "a.read_only", "requestParameters": "a.detail",
    }, {"requestParameters.": "a.detail"}),
    View(("kubernetes", None, "audit"), "a.source = 'k8s'", {
        "verb": "split_part(a.action, ' ', 1)", "requestURI": "a.detail",
        "objectRef.resource": attr("resource"), "objectRef.subresource": attr("subresource"),
        "objectRef.namespace": attr("namespace"), "objectRef.name": attr("name"),
        "objectRef.apiGroup": attr("api_group"), "user.username": "a.actor",
        "impersonatedUser.username": f"CASE WHEN {attr('impersonated_by')} IS NOT NULL "
                                     "THEN a.account END",
        "responseStatus.code": attr("status"), "sourceIPs": attr("source_ip"),
        "requestObject.roleRef.name": attr("role_ref"),
    }),
    View(("hashicorp", None, "vault"), "a.source = 'vault'", {
        "operation": "a.action", "path": "a.detail", "mount_type": attr("mount_type"),
        "policies": attr("policies"), "status": attr("status"),
        "remote_address": attr("remote_address"),
    }),
    View(("pamcorr", "database", None), f"a.action IN {_in(QUERY_ACTIONS)}", {
        "Query": "a.detail", "User": "a.account",
    }),
    # Judged actions (correlate/detect/run.py JUDGED_SQL): for now those taken after the
    # approval nearest before them was revoked, which the verdict alone shows as out_of_window.
    View(("pamcorr", None, "verdict"), "a.act_id IN (SELECT act_id FROM det_judged)", {
        "verdict": "'out_of_window'",
        "after_revocation": "'true'",
    }),
    View(("pamcorr", None, "activity"), "true", {}),
)


def view_for(product: str | None, category: str | None, service: str | None) -> View:
    """The view serving a Sigma logsource; KeyError naming what is served when none does."""
    for v in VIEWS:
        if v.key == (product, category, service):
            return v
    served = "; ".join("/".join(p or "-" for p in v.key) for v in VIEWS)
    raise KeyError(f"logsource {product}/{category}/{service} is not served (served: {served})")
