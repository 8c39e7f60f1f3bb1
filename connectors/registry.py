"""The explicit list of connectors: name -> "module:Class". `pamcorr sources` prints it."""

from __future__ import annotations

import importlib
import re

from correlate.errors import PamcorrError

REGISTRY: dict[str, str] = {
    "generic": "connectors.generic:GenericConnector",
    "teleport": "connectors.teleport:TeleportConnector",
    "cyberark": "connectors.cyberark:CyberArkConnector",
    "pim": "connectors.pim:PimConnector",
    "cloudtrail": "connectors.cloudtrail:CloudTrailConnector",
    "auditd": "connectors.auditd:AuditdConnector",
    "syslog": "connectors.syslog:SyslogConnector",
    "k8s": "connectors.k8s:KubernetesConnector",
    "vault": "connectors.vault:VaultConnector",
    "ocsf": "connectors.ocsf:OcsfConnector",
}


# The --option keys each connector reads (options.extra); any other key is an error.
OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "generic": ("dst",),
    "teleport": ("ticket_regex",),
    "cyberark": ("checkout_minutes", "dst", "ticket_regex"),
    "pim": ("dst",),
    "cloudtrail": ("cloudtrail_public_keys", "digest_metadata"),
    "auditd": ("host", "passwd", "sudo_runas", "auditd_complete"),
    "syslog": ("dst", "host"),
    "k8s": ("cluster",),
    "vault": ("vault_target",),
    "ocsf": (),
}


def check_options(name: str, keys) -> None:
    """An error naming the unknown --option keys and the ones this source reads."""
    known = OPTION_KEYS.get(name, ())
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise PamcorrError(f"source {name} has no option {', '.join(map(repr, unknown))}; "
                           f"known options: {', '.join(known) or '(none)'}")


# What a file's first bytes look like: (pattern, what it probably is), first match wins.
SNIFFS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(rb'"auditID"'), "Kubernetes audit JSON (source k8s)"),
    (re.compile(rb'"Records"\s*:|"eventSource"\s*:\s*"[a-z0-9-]+\.amazonaws\.com"'),
     "CloudTrail JSON (source cloudtrail)"),
    (re.compile(rb'type=(SYSCALL|EXECVE|USER_CMD|USER_START|PROCTITLE)'),
     "Linux audit log (source auditd)"),
    (re.compile(rb' (sshd|sudo|su)(\[\d+\])?: '), "syslog (source syslog)"),
    (re.compile(rb'"request_id"[^\n]*"mount_type"|"type"\s*:\s*"(request|response)"[^\n]*"auth"'),
     "Vault audit JSON (source vault)"),
    (re.compile(rb'"(cluster_name|ei)"\s*:[^\n]*"(code|event)"'), "Teleport audit JSON (source teleport)"),
    (re.compile(rb'"(Safe|SafeName|CAProperties)"'), "CyberArk audit (source cyberark)"),
    (re.compile(rb'"(activityDisplayName|roleDefinitionId)"|^[^\n]*(Activity|Role) ?Display ?Name'),
     "Entra PIM audit (source pim)"),
    (re.compile(rb'^[^\n]*\bapproval_id\b', re.IGNORECASE),
     "generic approvals CSV (generic --kind approvals)"),
    (re.compile(rb'^[^\n]*\bticket_id\b[^\n]*\b(from_state|to_state)\b', re.IGNORECASE),
     "generic ticket history CSV (generic --kind ticket_history)"),
    (re.compile(rb'^[^\n]*\bticket_id\b', re.IGNORECASE),
     "generic tickets CSV (generic --kind tickets)"),
    (re.compile(rb'^\s*\{[^\n]*"(account|actor)"[^\n]*"(target|host)"'),
     "generic activity JSON lines (generic --kind activity)"),
)


def guess_format(path) -> str | None:
    """What a file's first 64 KiB look like, for a file that a source could not read at all."""
    import gzip
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as fh:
            head = fh.read(1 << 16)
    except (OSError, EOFError):
        return None
    for pattern, what in SNIFFS:
        if pattern.search(head):
            return what
    return None


def get_connector(name: str):
    """An instance of the named connector; a clear error for unknown names."""
    if name not in REGISTRY:
        raise PamcorrError(f"unknown source {name!r}; known sources: {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise PamcorrError(f"source {name!r} is not available in this build") from None
        raise
    return getattr(module, class_name)()


def available() -> list[tuple[str, object | None]]:
    """(name, connector or None when its module is missing), in registry order."""
    out = []
    for name in REGISTRY:
        try:
            out.append((name, get_connector(name)))
        except PamcorrError:
            out.append((name, None))
    return out
