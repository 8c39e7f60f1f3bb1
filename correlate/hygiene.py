"""Approval hygiene (docs/hygiene.md): the checks' ids, severities and thresholds; the SQL is
correlate/sql/hygiene.sql, run by the engine after every `correlate` over the run's approvals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# check_id -> (severity, NIST SP 800-53 control, one line). The order is the order of outputs.
CHECKS: dict[str, tuple[str, str, str]] = {
    "self_approval": ("FAIL", "AC-5", "approver and requester are one identity"),
    "approval_bypass": ("FAIL", "AC-2, AC-6", "privilege granted outside the approval process"),
    "approver_is_implementer": ("WARN", "AC-5", "the approver did the work under the approval"),
    "approver_not_authorized": ("WARN", "AC-2, AC-5",
                                "approver not listed for the target (approvers.csv) or not "
                                "among the ticket's approvers"),
    "approval_unused": ("WARN", "AC-2, AC-6", "window ended without any action under it"),
    "standing_eligibility": ("WARN", "AC-2, AC-6",
                             "repeatedly unused approvals for one account and target"),
    "renewal_chain": ("WARN", "AC-6", "back-to-back approvals adding up to standing access"),
    "ticket_reused": ("WARN", "AC-2", "one ticket cited too long or after it closed"),
    "break_glass_routine": ("WARN", "AC-2, AC-6", "break-glass used as a routine path"),
    "window_oversized": ("INFO", "AC-6", "window far longer than the work done in it"),
    "scope_wider_than_use": ("INFO", "AC-6", "target pattern far wider than the hosts touched"),
    "approval_unused_unknown": ("INFO", "AC-2",
                                "no action seen, but a source of the target was quiet"),
}
CHECK_IDS = tuple(CHECKS)
SEVERITY_ORDER = ("FAIL", "WARN", "INFO")

# Why a check could not judge an approval (shown beside "not judged").
NOT_JUDGED = {
    "self_approval": "no requester or no approver",
    "approver_is_implementer": "no approver",
    "approver_not_authorized": "no approver, or neither approvers.csv nor the ticket's "
                               "approvers apply",
    "approval_unused": "window still open at the end of the period",
    "approval_unused_unknown": "window still open at the end of the period",
}


@dataclass(frozen=True)
class HygieneSettings:
    """Thresholds (`[hygiene]` of the config, `--hygiene KEY=VALUE`); units in the names' docs."""

    unused_runs: int = 3            # unused approvals per (account, target) -> standing_eligibility
    min_window: float = 2.0         # hours: shorter windows are never window_oversized
    used_fraction: float = 0.10     # the actions' span below this share of the window: oversized
    chain_gap: float = 5.0          # minutes between approvals that still chain them
    max_chain: float = 12.0         # hours a renewal chain may add up to
    max_per_week: int = 10          # approvals per (account, target) in any 7 days
    ticket_span: float = 14.0       # days one ticket may be cited over
    bg_per_30d: int = 2             # break-glass approvals per account in any 30 days
    scope_min_hosts: int = 10       # a pattern allowing fewer hosts is never scope_wider_than_use
    scope_used_fraction: float = 0.20   # touched hosts at most this share of the allowed ones

    def params(self) -> dict:
        """The SQL parameters ($hy_<name>)."""
        return {f"hy_{k}": v for k, v in asdict(self).items()}


KEYS = tuple(f.name for f in fields(HygieneSettings))


def hygiene_settings(values: dict, base: HygieneSettings = HygieneSettings()) -> HygieneSettings:
    """`base` with `values` (name -> number or numeric text) applied. ValueError, saying which key
    and why, for an unknown key, a value that is not a number, or a negative one."""
    out = {}
    for key, raw in values.items():
        if key not in KEYS:
            raise ValueError(f"unknown hygiene threshold {key!r} (known: {', '.join(KEYS)})")
        kind = type(getattr(base, key))
        if isinstance(raw, bool):
            raise ValueError(f"hygiene threshold {key}: a number, not {raw!r}")
        try:
            value = kind(raw) if not isinstance(raw, str) else kind(raw.strip())
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise ValueError(f"hygiene threshold {key}: {what}, not {raw!r}") from None
        if kind is int and not isinstance(raw, str) and value != raw:
            raise ValueError(f"hygiene threshold {key}: an integer, not {raw!r}")
        if value < 0:
            raise ValueError(f"hygiene threshold {key} must not be negative ({raw!r})")
        out[key] = value
    return HygieneSettings(**{**asdict(base), **out})


def parse_pairs(pairs: tuple[str, ...] | list[str], base: HygieneSettings = HygieneSettings()
                ) -> HygieneSettings:
    """`--hygiene KEY=VALUE` options applied to `base`; ValueError as hygiene_settings."""
    values = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not KEY=VALUE")
        values[key.strip()] = value
    return hygiene_settings(values, base)


def severities(counts: list[dict]) -> dict[str, int]:
    """{FAIL: n, WARN: n, INFO: n} over a run's hygiene counts."""
    out = {s: 0 for s in SEVERITY_ORDER}
    for c in counts:
        out[c["severity"]] += c["n"]
    return out


def summary_line(counts: list[dict]) -> str:
    """`approval hygiene: FAIL 2, WARN 5, INFO 7; not judged 16 (pamcorr hygiene)`."""
    if not counts:
        return "  approval hygiene: not run"
    sev = severities(counts)
    missing = max((c["not_judged"] for c in counts if c["check_id"] == "self_approval"),
                  default=0)
    return (f"  approval hygiene: FAIL {sev['FAIL']}, WARN {sev['WARN']}, INFO {sev['INFO']}"
            + (f"; {missing} approval(s) without requester or approver not judged"
               if missing else "") + " (pamcorr hygiene)")
