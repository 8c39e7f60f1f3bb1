"""Scope pages a weekly bundle carries in its scope/ folder: one per account with the most FAIL
actions and per approval the most FAIL actions were judged against (bounded), each linking back
to the bundle's gap report, whose names link to them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from correlate.store import Store
from reports.scope import scope_context, write_scope

SCOPE_DIR = "scope"
SCOPE_LIMIT = 20        # pages per kind (accounts, approvals)
PAGE_ACTIONS = 2000     # actions a page lists: every FAIL one first (time and size stay bounded)

# Accounts with FAIL actions in the run, most first (the exact name the log shows).
FAIL_ACCOUNTS_SQL = """
SELECT a.account, count(*) AS n FROM findings f JOIN activity a USING (act_id)
WHERE f.run_id = ? AND f.status = 'FAIL'
GROUP BY a.account ORDER BY n DESC, a.account
"""

# Approvals FAIL actions were judged against (out_of_window, ticket_missing, ...), most first.
FAIL_APPROVALS_SQL = """
SELECT approval_id, count(*) AS n FROM findings
WHERE run_id = ? AND status = 'FAIL' AND approval_id IS NOT NULL
GROUP BY approval_id ORDER BY n DESC, approval_id
"""


@dataclass
class ScopeLinks:
    """Which names have a page, as links relative to the gap report, and how many were left out."""

    accounts: dict[str, str] = field(default_factory=dict)    # account -> scope/account-...html
    approvals: dict[str, str] = field(default_factory=dict)   # approval id -> scope/approval-...
    accounts_left_out: int = 0
    approvals_left_out: int = 0


def page_name(kind: str, name: str) -> str:
    """A file name safe on every file system and in a URL, whatever the name holds (slashes,
    dots, markup): a readable part and a hash that tells apart names it makes alike."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "x"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{SCOPE_DIR}/{kind}-{slug}-{digest}.html"


def plan(store: Store, run_id: int, limit: int | None = None) -> ScopeLinks:
    """The pages a bundle of `run_id` carries: the `limit` (SCOPE_LIMIT) accounts and approvals
    with most FAIL actions."""
    limit = SCOPE_LIMIT if limit is None else limit
    accounts = store.query(FAIL_ACCOUNTS_SQL, [run_id])
    approvals = store.query(FAIL_APPROVALS_SQL, [run_id])
    return ScopeLinks(
        accounts={a: page_name("account", a) for a, _ in accounts[:limit]},
        approvals={a: page_name("approval", a) for a, _ in approvals[:limit]},
        accounts_left_out=max(0, len(accounts) - limit),
        approvals_left_out=max(0, len(approvals) - limit))


def write_pages(store: Store, folder: Path, links: ScopeLinks, run: dict,
                report: str = "gap-report.html") -> list[Path]:
    """Render the planned pages into `folder`/scope/ (the bundle's mode, like every other file),
    over the run's period and with its verdicts; each links back to `report`."""
    back = "../" + report
    common = {"start": run["period_start"], "end": run["period_end"], "run_id": run["run_id"],
              "limit": PAGE_ACTIONS, "fail_first": True}
    written = []
    for account, href in links.accounts.items():
        ctx = scope_context(store, account=account, **common)
        ctx.back = back
        written.append(write_scope(ctx, Path(folder) / href))
    for approval_id, href in links.approvals.items():
        ctx = scope_context(store, approval_id=approval_id, **common)
        ctx.back = back
        written.append(write_scope(ctx, Path(folder) / href))
    return written
