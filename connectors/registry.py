"""The explicit list of connectors: name -> "module:Class". `pamcorr sources` prints it."""

from __future__ import annotations

import importlib

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
}


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
