#!/usr/bin/env python3
"""Seeded generator for pamcorr's sample data: one small company, ISO week 2026-W47.

    python sample_data/generate.py [--seed 47]

(Re)writes approvals.csv, tickets.csv, ticket_history.csv, activity.jsonl and
expected_counts.json beside this script. Standard library only; the same seed gives
byte-identical files.

Story: ~40 people and ~10 service accounts work on ~145 hosts. Most privileged
activity is sessions of commands inside approved PAM windows backed by a valid change
ticket. Mixed in on purpose: overruns into the 300 s grace period, work after expiry or
revocation, denied and missing approvals, approvals without a ticket or with a
cancelled / rejected / not-yet-approved / closed-early / mis-planned / unknown ticket,
break-glass access with and without a follow-up ticket, overlapping and nested
windows, glob targets, MixedCase accounts, +01:00 / +05:30 and epoch-ms timestamps,
hostile strings, fake secrets, malformed rows and exact duplicate lines. Ingest-level
counts go to expected_counts.json; per-row verdicts are deliberately not predicted.
"""
import argparse
import csv
import json
import os
import random
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase

UTC = timezone.utc
OUT = os.path.dirname(os.path.abspath(__file__))
DAY0 = datetime(2026, 11, 15, tzinfo=UTC)                 # the day before the week
WEEK = datetime(2026, 11, 16, tzinfo=UTC)                 # Monday 00:00Z
WEEK_END = datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC)
EXPORT = datetime(2026, 11, 23, 6, tzinfo=UTC)            # when tickets were exported
S, M, H, D = (timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1),
              timedelta(days=1))
OFFSETS = [timedelta(hours=1), timedelta(hours=5, minutes=30)]

FIRST = ("alice bob carol dave erin frank grace heidi ivan judy kevin laura mallory niaj "
         "olivia peggy quentin rupert sybil trent uma victor wendy xavier yasmin zoe aaron "
         "bella chen diego elena farid gita hugo ines jonas kenji lena marco nadia").split()
LAST = ("nguyen smith garcia okafor kim mueller rossi novak patel silva tanaka jones cohen "
        "dubois ivanova larsen moreau singh walsh haddad berg costa ito khan lopez mendes "
        "olsen park quinn reyes sato torres ueda vargas weber young zhang adams baker clark"
        ).split()
PEOPLE = [f"{f}.{l}" for f, l in zip(FIRST, LAST)]
# team: (head count, host groups it works on); the first member is the team lead
TEAMS = {"web": (9, ["web-prod", "api-prod", "web-stg"]), "dba": (6, ["db-prod", "db-stg"]),
         "platform": (8, ["k8s-node", "k8s-stg-node", "ci-runner"]),
         "sre": (9, ["cache-prod", "mq-prod", "mon", "log-prod", "bastion", "web-prod"]),
         "dev": (6, ["web-stg", "db-stg", "ci-runner"]), "sec": (2, ["vault", "bastion"])}
GROUPS = {"web-prod": 30, "api-prod": 16, "web-stg": 12, "db-prod": 10, "db-stg": 4,
          "k8s-node": 24, "k8s-stg-node": 8, "ci-runner": 10, "cache-prod": 8, "mq-prod": 6,
          "mon": 4, "log-prod": 6, "bastion": 4, "vault": 3}
HOSTS = {g: [f"{g}-{i:02d}" for i in range(1, n + 1)] for g, n in GROUPS.items()}
KIND = {"web-prod": "web", "api-prod": "web", "web-stg": "web", "db-prod": "db",
        "db-stg": "db", "k8s-node": "k8s", "k8s-stg-node": "k8s"}
CMDS = {
    "web": ["systemctl status nginx", "sudo systemctl reload nginx", "sudo nginx -t",
            "tail -n 200 /var/log/nginx/error.log", "journalctl -u app --since -1h --no-pager",
            "curl -s localhost:8080/healthz", "sudo systemctl restart app", "df -h /var",
            "ps aux --sort=-%mem | head -20", "sudo vi /etc/nginx/conf.d/upstream.conf",
            "ls -la /opt/app/releases", "grep -c ' 502 ' /var/log/nginx/access.log",
            "sudo apt-get install -y --only-upgrade openssl", "ss -tlnp", "uptime"],
    "db": ["systemctl status postgresql", "sudo -u postgres psql -c 'select version()'",
           "tail -n 100 /var/log/postgresql/postgresql-16-main.log", "df -h /var/lib/postgresql",
           "sudo systemctl reload postgresql", "iostat -x 5 3",
           "sudo vi /etc/postgresql/16/main/pg_hba.conf", "du -sh /var/lib/postgresql/16/main"],
    "k8s": ["sudo crictl ps", "sudo systemctl restart kubelet", "journalctl -u kubelet -n 200",
            "kubectl get pods -A -o wide", "kubectl describe node $(hostname)", "free -m",
            "kubectl logs -n payments deploy/api --tail=200", "sudo crictl rmi --prune"],
    "ops": ["uptime", "df -h", "sudo systemctl restart redis", "tail -f /var/log/syslog",
            "sudo journalctl -p err --since today", "rabbitmqctl list_queues", "top -b -n 1",
            "sudo vault operator unseal", "sudo systemctl status prometheus", "last -n 20",
            "cat /etc/ssh/sshd_config", "sudo apt-get upgrade -y"],
}
DBQ = ["SELECT count(*) FROM orders WHERE created_at > now() - interval '1 hour'",
       "SELECT pid, state, query FROM pg_stat_activity WHERE state <> 'idle'",
       "EXPLAIN ANALYZE SELECT * FROM invoices WHERE customer_id = 4211",
       "VACUUM ANALYZE public.sessions", "SELECT * FROM pg_locks WHERE NOT granted",
       "UPDATE feature_flags SET enabled = true WHERE name = 'new_checkout'"]
KEXEC = ["kubectl exec -n payments deploy/api -- env",
         "kubectl exec -n web pod/frontend-7c9f -- cat /etc/resolv.conf",
         "kubectl exec -n data kafka-0 -- kafka-topics.sh --list --bootstrap-server :9092"]
SECRETS = ["mysql -u root -pS3cr3t! -e 'SHOW PROCESSLIST'",
           "curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdmMtZGVwbG95In0"
           ".ZmFrZS1zaWduYXR1cmU' https://deploy.internal.example/api/v1/releases",
           "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
           "PGPASSWORD='hunter2' psql -h db-prod-01 -U app -c 'select 1'",
           "redis-cli -a Sup3rS3cret! INFO replication",
           "curl -u admin:P@ssw0rd123 http://localhost:9200/_cluster/health"]
HOSTILE = ["echo '<script>alert(1)</script>'", "echo '<img src=x onerror=alert(1)>' >> index.html",
           "=cmd|' /C calc'!A0", "curl -s 'javascript:alert(1)'", "+SUM(1+1)*cmd|' /C calc'!A0",
           "psql -c \"SELECT 1\"; DROP TABLE approvals; --",
           "cat <<'EOF' > /tmp/motd\n<b>maintenance</b>, tonight\nEOF"]


def iso(t, off=None):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if off is None else \
        t.astimezone(timezone(off)).isoformat()


def command(r, host):
    kind = KIND.get(host.rsplit("-", 1)[0], "ops")
    if kind == "db" and r.random() < 0.4:
        return "db.query", r.choice(DBQ)
    if kind == "k8s" and r.random() < 0.3:
        return "kubectl exec", r.choice(KEXEC)
    c = r.choice(CMDS[kind])
    return ("sudo", c[5:]) if c.startswith("sudo ") else ("ssh.command", c)


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.approvals, self.tickets, self.events = [], [], []
        self.team = {}
        i = 0
        for name, (n, groups) in TEAMS.items():
            for p in PEOPLE[i:i + n]:
                self.team[p] = (name, groups, PEOPLE[i])
            i += n

    # ---- tickets and approvals ------------------------------------------------------------
    def ticket(self, ws, we, mode="ok", opened=None):
        """A change ticket for work in [ws, we]; mode picks a valid or a broken shape."""
        r = self.r
        opened = opened or max(DAY0 + 7 * H, ws - r.randint(90, 1800) * M)
        t = dict(opened=opened, ps=ws - r.choice([0, 15, 30]) * M,
                 pe=we + r.choice([30, 60, 120]) * M, assignee=r.choice(PEOPLE), hist=None)
        if r.random() < 0.2 and mode == "ok":
            t["ps"] = t["pe"] = None
        frac = lambda f: ws + (we - ws) * f
        if mode in ("ok", "hist_resolved_mid", "hist_late_approval") and \
                (mode != "ok" or r.random() < 0.35):
            approved = opened + (ws - 20 * M - opened) * r.uniform(0.1, 0.9)
            resolved = max(t["pe"] or we, we) + r.randint(10, 240) * M
            if mode == "hist_late_approval":
                approved = frac(0.5)
            elif mode == "hist_resolved_mid":
                resolved = frac(0.5)
            steps = [(opened, "requested"), (approved, "approved"),
                     (max(approved + M, ws - r.randint(2, 15) * M), "in_progress"),
                     (resolved, "resolved"), (resolved + r.randint(2, 30) * H, "closed")]
            t["hist"] = [(ts.replace(microsecond=0), s) for ts, s in steps if ts <= EXPORT]
            t["status"] = t["hist"][-1][1]
            t["closed"] = t["hist"][-1][0] if t["status"] == "closed" else None
            return self._add(t)
        closed = we + r.randint(60, 600) * M
        t.update(status=r.choice(["closed", "closed", "resolved"]), closed=closed)
        if closed > EXPORT:
            t.update(status=r.choice(["in_progress", "approved"]), closed=None)
        if mode in ("cancelled", "rejected"):
            t.update(status=mode, closed=min(ws - 30 * M, opened + H))
        elif mode == "requested":
            t.update(status="requested", closed=None)
        elif mode == "closed_early":
            t.update(status="closed", closed=frac(0.4))
        elif mode == "planned_elsewhere":
            t.update(ps=t["ps"] + D, pe=t["pe"] + D, status="in_progress", closed=None)
        elif mode == "opened_late":
            t.update(opened=frac(0.3), status="in_progress", closed=None)
        return self._add(t)

    def _add(self, t):
        for k in ("opened", "closed", "ps", "pe"):
            t[k] = t[k] and t[k].replace(microsecond=0)
        self.tickets.append(t)
        return t

    def approve(self, account, target, ws, we, ticket=None, kind="standard", status="approved",
                revoked=None, requester=None):
        lead = self.team.get(requester or account, (0, 0, PEOPLE[0]))[2]
        approver = "" if kind == "break_glass" else (lead if lead != account else PEOPLE[10])
        a = dict(account=account, target=target, start=ws, end=we, ticket=ticket, kind=kind,
                 status=status, revoked=revoked, requester=requester or account.lower(),
                 approver=approver)
        self.approvals.append(a)
        return a

    def fresh(self, person, groups):
        """A host of `groups` that no approval of `person` (any status) matches, or None."""
        mine = [a["target"].lower() for a in self.approvals if a["account"].lower() == person]
        pool = [h for g in groups for h in HOSTS[g] if not any(fnmatchcase(h, t) for t in mine)]
        return self.r.choice(pool) if pool else None

    # ---- activity -------------------------------------------------------------------------
    def ev(self, t, account, target, action, detail, sid=None, actor=None):
        self.events.append(dict(t=t.replace(microsecond=0), account=account, target=target,
                                action=action, detail=detail, session_id=sid, actor=actor))

    def session(self, acct, host, t0, t1, n=0, cmds=None, actor=None, sid=None, start=True,
                end=True):
        """Start row at t0, n random commands (or `cmds`) spread over [t0, t1], end row at t1."""
        r = self.r
        sid = sid or "s-%08x" % r.getrandbits(32)
        if start:
            self.ev(t0, acct, host, "session.start",
                    f"ssh from 10.{r.randint(1, 40)}.{r.randint(0, 255)}.{r.randint(2, 254)}",
                    sid, actor)
        cmds = cmds or [command(r, host) for _ in range(n)]
        span = max(2, int((t1 - t0).total_seconds()) - 1)
        for s, c in zip(sorted(r.randint(1, span) for _ in cmds), cmds):
            self.ev(t0 + s * S, acct, host, *c, sid, actor)
        if end:
            self.ev(t1, acct, host, "session.end", "logout", sid, actor)
        return sid

    def work(self, acct, hosts, ws, we, tail=None, busy=(2, 6)):
        """Sessions inside [ws, we]; tail 'grace' runs a few minutes over, 'late' comes back
        after the window, 'early' starts half an hour before it."""
        r = self.r
        span = (we - ws).total_seconds()
        for i in range(r.randint(*busy)):
            t0 = ws + int(r.uniform(0, span * 0.9)) * S
            host, n = r.choice(hosts), r.randint(6, 30)
            over = tail == "grace" and i == 0
            t1 = we if over else min(we, t0 + n * r.randint(20, 80) * S)
            sid = self.session(acct, host, t0, t1, n, end=not over)
            if over:
                self.session(acct, host, we + 5 * S, we + r.randint(120, 295) * S,
                             r.randint(2, 6), sid=sid, start=False)
        if tail == "late":
            t0 = we + r.randint(10, 120) * M
            self.session(acct, r.choice(hosts), t0, t0 + r.randint(5, 25) * M, r.randint(5, 20))
        elif tail == "early":
            t0 = ws - r.randint(20, 45) * M
            self.session(acct, r.choice(hosts), t0, ws + r.randint(5, 20) * M, r.randint(8, 25))

    def window(self, day=None, hours=None, night=False):
        r = self.r
        day = r.choice([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6]) if day is None else day
        start = WEEK + day * D + (r.randint(0, 22) if night else r.randint(7, 17)) * H \
            + r.choice([0, 15, 30, 45]) * M
        return start, start + (hours or r.choice([1, 2, 2, 3, 4, 4, 6, 8])) * H

    def hosts_for(self, target):
        return [h for g in HOSTS for h in HOSTS[g] if fnmatchcase(h, target.lower())]
