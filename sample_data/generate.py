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
from collections import Counter
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
        elif mode == "incident":        # raised for break-glass work: no plan, short-lived
            t.update(ps=None, pe=None, status="closed", closed=opened + r.randint(2, 20) * H)
            if t["closed"] > EXPORT:
                t.update(status="in_progress", closed=None)
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

    # ---- scenarios --------------------------------------------------------------------------
    def humans(self):
        """Everyday approved work: 3-6 approvals per person, mostly exact hosts, some globs."""
        r = self.r
        for p in PEOPLE:
            groups = self.team[p][1]
            for _ in range(r.randint(3, 6)):
                g = r.choice(groups)
                host, x = r.choice(HOSTS[g]), r.random()
                target = (r.choice([f"{g}-*", host[:-1] + "?", f"{g}-1*"]) if x < 0.12
                          else host.upper() if x < 0.18 else host)
                if not self.hosts_for(target):
                    target = f"{g}-*"
                account = p.title() if r.random() < 0.08 else p      # Alice.Nguyen
                ws, we = self.window()
                self.approve(account, target, ws, we, self.ticket(ws, we))
                if r.random() < 0.1:                # overlapping extension, its own ticket
                    ws2, we = we - 30 * M, we + r.choice([1, 2]) * H
                    self.approve(account, target, ws2, we, self.ticket(ws2, we))
                hosts = self.hosts_for(target)
                tail = r.choices([None, "grace", "late", "early"], [50, 40, 5, 5])[0]
                self.work(p, r.sample(hosts, min(len(hosts), r.randint(1, 4))), ws, we, tail)

    def services(self):
        """Service accounts: standing weekly windows, nightly jobs, deploy windows."""
        r = self.r
        wk0, wk1 = DAY0 + 20 * H, EXPORT - 2 * H
        week_hours = [WEEK + h * H for h in range(168)]

        def standing(acct, targets, requester):
            tk = self.ticket(wk0, wk1 - 2 * H)
            for t in targets:
                self.approve(acct, t, wk0, wk1, tk, requester=requester)

        standing("svc-monitor", ["web-prod-*", "api-prod-*", "db-prod-*"], PEOPLE[23])
        checks = ["/usr/lib/nagios/plugins/check_load -w 8,6,4 -c 12,10,8",
                  "/usr/lib/nagios/plugins/check_disk -w 20% -c 10% -p /"]
        for hr in week_hours[::2]:
            for i, h in enumerate(HOSTS["web-prod"] + HOSTS["api-prod"] + HOSTS["db-prod"]):
                self.ev(hr + (i * 3 + r.randint(0, 2)) * S, "svc-monitor", h, "ssh.command",
                        checks[i % 2], actor="nagios")
        standing("svc-logship", ["log-prod-*"], PEOPLE[23])
        for hr in week_hours:
            for h in HOSTS["log-prod"]:
                self.ev(hr + r.randint(0, 59) * S, "svc-logship", h, "sudo",
                        "logrotate -f /etc/logrotate.d/app", actor="cron")
        standing("svc-argo", ["k8s-node-*"], PEOPLE[15])
        for _ in range(450):
            t0, h = WEEK + r.randint(0, 604000) * S, r.choice(HOSTS["k8s-node"])
            self.session("svc-argo", h, t0, t0 + r.randint(5, 90) * S, actor="argocd",
                         cmds=[("kubectl exec", r.choice(KEXEC))] * r.randint(1, 3))
        standing("svc-ci", ["ci-runner-*"], PEOPLE[15])
        for j in range(700):
            t0, h = WEEK + r.randint(0, 604000) * S, r.choice(HOSTS["ci-runner"])
            job = 880000 + j
            self.session("svc-ci", h, t0, t0 + r.randint(60, 600) * S, actor="gitlab-runner", cmds=[
                ("ssh.command", f"git clone --depth 1 https://git.internal.example/shop/app.git /builds/{job}"),
                ("ssh.command", f"docker build -t registry.internal.example/app:{job} ."),
                ("ssh.command", f"docker push registry.internal.example/app:{job}")])
        # ETL's glob db-prod-0? misses db-prod-10, which the job queries anyway
        standing("svc-etl", ["db-prod-0?"], PEOPLE[9])
        for day in range(7):
            for i, h in enumerate(HOSTS["db-prod"]):
                t0 = WEEK + day * D + 30 * M + i * 4 * M
                self.session("svc-etl", h, t0, t0 + 3 * M, actor="airflow",
                             cmds=[("db.query", q) for q in r.sample(DBQ[:3], 3)])
        ws = WEEK + 5 * D + 22 * H                     # weekend maintenance by a DBA
        self.approve("svc-dbmaint", "db-prod-*", ws, ws + 6 * H, self.ticket(ws, ws + 6 * H),
                     requester=PEOPLE[9])
        for i, h in enumerate(HOSTS["db-prod"]):
            self.session("svc-dbmaint", h, ws + i * 30 * M, ws + i * 30 * M + 25 * M, actor=PEOPLE[10],
                         cmds=[("db.query", "VACUUM FULL ANALYZE public.events"),
                               ("db.query", "REINDEX TABLE CONCURRENTLY public.orders"),
                               ("sudo", "systemctl reload postgresql")])
        # nightly backups 01:00-03:00 under one standard change; Tue starts early, Thu overruns
        tk = self.ticket(DAY0 + 22 * H, WEEK + 7 * D + 4 * H)
        for day in range(-1, 7):
            ws = WEEK + day * D + H
            self.approve("svc-backup", "db-prod-*", ws, ws + 2 * H, tk, requester=PEOPLE[9])
            if day < 0:
                continue
            t0, per = ws - (3 * M if day == 1 else 0 * M), (15 if day == 3 else 10)
            for h in HOSTS["db-prod"]:
                stamp = f"{(WEEK + day * D):%Y%m%d}"
                self.session("svc-backup", h, t0, t0 + (per - 1) * M, actor="cron", cmds=[
                    ("sudo", f"pg_basebackup -D /backup/{stamp} -Ft -z -X stream"),
                    ("ssh.command", f"sha256sum /backup/{stamp}/base.tar.gz"),
                    ("ssh.command", f"aws s3 cp /backup/{stamp}/ s3://acme-backups/{h}/{stamp}/ --recursive")])
                t0 += per * M
        # nightly config runs on the nodes, one ticket per night
        for day in range(-1, 7):
            ws = WEEK + day * D + 2 * H
            self.approve("svc-ansible", "k8s-node-*", ws, ws + 2 * H, self.ticket(ws, ws + 2 * H),
                         requester=PEOPLE[15])
            for i, h in enumerate(HOSTS["k8s-node"] if day >= 0 else []):
                t0 = ws + (i * 2 + 5) * M
                self.session("svc-ansible", h, t0, t0 + 90 * S, 0, actor="awx", cmds=[
                    ("sudo", "apt-get update -q"), ("sudo", "apt-get install -y -q containerd.io"),
                    ("ssh.command", "cat /etc/containerd/config.toml"),
                    ("sudo", "systemctl restart containerd")])
        # rolling deploys: 30 or 16 hosts, ~2.5 min each; two windows are too short
        ver = 0
        for day in range(5):
            for hh in ([10, 14, 16] if day < 4 else [11]):
                ver += 1
                g = "web-prod" if (day + hh) % 2 else "api-prod"
                ws = WEEK + day * D + hh * H
                we = ws + (45 if (day, hh) in ((1, 14), (3, 10)) else 85) * M
                self.approve("svc-deploy", f"{g}-*", ws, we, self.ticket(ws, we), requester=PEOPLE[0])
                self.deploy(g, HOSTS[g], ws + 2 * M, f"2026.11.{ver}")
        self.deploy("web-prod", HOSTS["web-prod"][:6], WEEK + 4 * D + 19 * H + 30 * M,
                    "2026.11.hotfix")                   # Friday evening, no approval
        for hr in week_hours:                           # orphaned cron, never approved
            self.session("svc-legacy", "mq-prod-03", hr + 7 * M, hr + 9 * M, actor="cron",
                         cmds=[("ssh.command", "/opt/legacy/bin/queue-drain.sh --batch 500")])

    def deploy(self, g, hosts, t0, ver):
        for h in hosts:
            t1 = t0 + self.r.randint(120, 170) * S
            self.session("svc-deploy", h, t0, t1, actor="jenkins", cmds=[
                ("sudo", "systemctl stop app"),
                ("ssh.command", f"tar -xzf /opt/releases/app-{ver}.tgz -C /opt/app/current"),
                ("sudo", "systemctl start app"), ("ssh.command", "curl -fsS localhost:8080/healthz")])
            t0 = t1 + 5 * S

    def trouble(self):
        """Dedicated (person, host) pairs, so each kind of trouble shows up cleanly."""
        r = self.r
        ops = [p for p in PEOPLE if self.team[p][0] in ("web", "dba", "platform", "sre")]

        def pick(groups=None):
            while True:
                p = r.choice(ops)
                h = self.fresh(p, groups or self.team[p][1])
                if h:
                    return p, h

        for i in range(16):                 # break-glass: reviewed by a ticket, or not
            p, h = pick()
            ws = self.window(day=r.randint(0, 3), night=True)[0]
            we = ws + r.randint(30, 120) * M
            how = "retro retro retro retro retro retro retro retro prior prior none none none " \
                  "late late unknown".split()[i]
            tk = (self.ticket(ws, we, "incident", opened=we + r.randint(30, 600) * M) if how == "retro"
                  else self.ticket(ws, we, "incident", opened=ws - 2 * H) if how == "prior"
                  else self.ticket(ws, we, "incident", opened=we + r.randint(30, 60) * H)
                  if how == "late" else "CHG-9%03d" % r.randint(0, 999) if how == "unknown" else None)
            self.approve(p, h, ws, we, tk, kind="break_glass")
            self.work(p, [h], ws, we, busy=(3, 6))
        for i in range(10):                 # standard approval without a ticket
            p, h = pick()
            ws, we = self.window()
            self.approve(p, h, ws, we, None)
            self.work(p, [h], ws, we)
        nest = [a for a in self.approvals if a["account"] in PEOPLE and a["target"] in HOSTS.get(
            a["target"].rsplit("-", 1)[0], []) and a["kind"] == "standard"]
        for a in r.sample(nest, 4):         # a long no-ticket window around a ticketed one
            p, h, ws, we = a["account"], a["target"], a["start"] - 3 * H, a["end"] + 3 * H
            self.approve(p, h, ws, we, None)
            self.work(p, [h], ws, a["start"] - 10 * M, busy=(1, 2))
            self.work(p, [h], a["end"] + 10 * M, we, busy=(1, 2))
        modes = ("cancelled rejected requested closed_early planned_elsewhere opened_late "
                 "hist_resolved_mid hist_late_approval unknown").split()
        for i in range(18):                 # tickets that do not cover the work
            p, h = pick()
            ws, we = self.window()
            m = modes[i % len(modes)]
            self.approve(p, h, ws, we, "CHG-9%03d" % r.randint(0, 999) if m == "unknown"
                         else self.ticket(ws, we, m))
            self.work(p, [h], ws, we)
        for i in range(15):                 # revoked mid-window (12) or after it ended (3)
            p, h = pick()
            ws, we = self.window(hours=r.choice([3, 4, 6, 8]))
            rv = (we + r.randint(1, 10) * H if i >= 12
                  else ws + (we - ws) * r.uniform(0.3, 0.7)).replace(microsecond=0)
            self.approve(p, h, ws, we, self.ticket(ws, we), status="revoked", revoked=rv)
            self.work(p, [h], ws, min(rv, we), tail="grace" if i % 2 else None)
            if rv < we:                     # ... and carried on regardless
                t0 = rv + r.randint(6, 30) * M
                self.session(p, h, t0, t0 + r.randint(10, 40) * M, r.randint(10, 30))
        for i in range(15):                 # denied; five went ahead anyway
            p, h = pick()
            ws, we = self.window()
            tk = [lambda: self.ticket(ws, we, "rejected"), lambda: None,
                  lambda: self.ticket(ws, we, "requested")][i % 3]()
            self.approve(p, h if i % 5 else h.rsplit("-", 1)[0] + "-*", ws, we, tk, status="denied")
            if i < 5:
                self.work(p, [h], ws, we, busy=(1, 3))
        for i in range(3):                  # approved the day before; back on Monday and Sunday
            p, h = pick()
            ws = DAY0 + r.randint(8, 12) * H
            self.approve(p, h, ws, ws + 2 * H, self.ticket(ws, ws + 2 * H))
            for t0 in (WEEK + r.randint(6, 9) * H, WEEK + 6 * D + r.randint(18, 22) * H):
                self.session(p, h, t0, t0 + 20 * M, r.randint(10, 20))
        for i in range(2):                  # malformed: end before start (quarantine)
            p, h = pick()
            ws, we = self.window()
            self.approve(p, h, we, ws, self.ticket(ws, we))
        for i in range(6):                  # poking around where nobody approved anything
            p, h = pick(["vault", "db-prod", "bastion"])
            t0 = self.window()[0]
            self.session(p, h, t0, t0 + r.randint(10, 40) * M, r.randint(10, 30))
        t0 = WEEK + 2 * D + 13 * H
        for i, target in enumerate(["<img src=x onerror=alert(1)>",
                                    'web-prod-01"><script>alert(1)</script>']):
            self.ev(t0 + i * 7 * M, ops[i], target, "ssh.command", "id")

    def noise_tickets(self, total=400):
        """Tickets no approval references: planned for next week, rejected, cancelled, done."""
        r = self.r
        while len(self.tickets) < total:
            ws, we = self.window()
            later = r.random() < 0.3
            if later:
                ws, we = ws + 7 * D, we + 7 * D
            mode = r.choice(["ok", "ok", "ok", "requested", "rejected", "cancelled"])
            self.ticket(ws, we, mode, opened=DAY0 + r.randint(8, 180) * H if later else None)
        self.tickets[-1]["assignee"] = "=cmd|' /C calc'!A0"

    # ---- output -----------------------------------------------------------------------------
    def write(self, out, seed):
        r = self.r
        self.tickets.sort(key=lambda t: t["opened"])
        n = 4100
        for t in self.tickets:
            n += r.randint(1, 3)
            t["id"] = f"CHG-{n}"
        self.approvals.sort(key=lambda a: (a["start"], a["account"].lower(), a["target"]))
        off_a = set(r.sample(range(len(self.approvals)), 10))
        appr = [[f"PAM-{10001 + i}", a["account"], a["target"]]
                + [iso(a[k], OFFSETS[i % 2] if i in off_a else None) if a[k] else ""
                   for k in ("start", "end")]
                + [a["ticket"]["id"] if isinstance(a["ticket"], dict) else a["ticket"] or "",
                   a["requester"], a["approver"], a["kind"], a["status"],
                   iso(a["revoked"], OFFSETS[i % 2] if i in off_a else None) if a["revoked"] else ""]
                for i, a in enumerate(self.approvals)]
        off_t = set(r.sample(range(len(self.tickets)), 8))
        tick, hist = [], []
        for i, t in enumerate(self.tickets):
            off = OFFSETS[i % 2] if i in off_t else None
            tick.append([t["id"], t["status"]] + [iso(t[k], off) if t[k] else ""
                        for k in ("opened", "closed", "ps", "pe")] + [t["assignee"]])
            hist += [[t["id"], iso(ts, off), s] for ts, s in t["hist"] or []]
        hdr = {"approvals": "approval_id account target start end ticket requester approver kind "
                            "status revoked_at", "tickets": "ticket_id status opened closed "
                            "planned_start planned_end assignee", "ticket_history": "ticket_id ts status"}
        for name, rows in (("approvals", appr), ("tickets", tick), ("ticket_history", hist)):
            with open(os.path.join(out, f"{name}.csv"), "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(hdr[name].split())
                w.writerows(rows)

        ev = sorted(self.events, key=lambda e: e["t"])
        pick = r.sample(range(len(ev)), 70)
        epoch, offset, bad, no_acct, naive, dups = (set(pick[:12]), set(pick[12:42]), pick[42:45],
                                                    pick[45:48], set(pick[48:50]), pick[50:70])
        human = [i for i, e in enumerate(ev) if e["action"] in ("ssh.command", "sudo")
                 and not e["account"].startswith("svc-") and i not in set(pick)]
        chosen = r.sample(human, len(SECRETS) * 2 + len(HOSTILE))
        for i, detail in zip(chosen, SECRETS * 2 + HOSTILE):
            ev[i]["detail"] = detail
        svc = [i for i, e in enumerate(ev) if e["account"] == "svc-ci" and i not in set(pick)]
        for i, actor in zip(r.sample(svc, 2), ["javascript:alert(1)", "<script>alert('actor')</script>"]):
            ev[i]["actor"] = actor
        lines = []
        for i, e in enumerate(ev):
            d = {"event_id": f"ev-{i + 1:06d}", "ts": iso(e["t"])}
            if i in epoch:
                d["ts"] = int(e["t"].timestamp() * 1000)
            elif i in offset:
                d["ts"] = iso(e["t"], OFFSETS[i % 2])
            elif i in naive:
                d["ts"] = e["t"].strftime("%Y-%m-%dT%H:%M:%S")
            d.update((k, e[k]) for k in ("account", "target", "action", "detail", "session_id",
                                         "actor") if e[k] is not None)
            if e["account"] == "svc-logship":
                d["session_id"] = None          # this shipper writes explicit nulls
            if i in no_acct:
                d.pop("account") if i != no_acct[2] else d.update(account=None)
            line = json.dumps(d, separators=(",", ":"))
            if i in bad:
                line = [line[:len(line) // 2], line[:-1] + ",}", str(d)][bad.index(i)]
            lines.append(((i, 0), line))
        lines += [((i + r.randint(1, 4), 1), lines[i][1]) for i in dups]
        lines.sort(key=lambda x: x[0])
        with open(os.path.join(out, "activity.jsonl"), "w", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for _, line in lines)

        count = lambda rows, col: dict(sorted(Counter(row[col] for row in rows).items()))
        expected = {
            "seed": seed,
            "approvals.csv": {"rows": len(appr), "end_before_start": 2,
                              "rows_with_offset_timestamps": len(off_a),
                              "by_kind": count(appr, 8), "by_status": count(appr, 9)},
            "tickets.csv": {"rows": len(tick), "with_history": len({h[0] for h in hist}),
                            "rows_with_offset_timestamps": len(off_t), "by_status": count(tick, 1)},
            "ticket_history.csv": {"rows": len(hist)},
            "activity.jsonl": {
                "lines": len(lines), "invalid_json": 3, "missing_account": 3,
                "zoneless_timestamp": 2, "exact_duplicate_lines": len(dups),
                "distinct_valid_events": len(ev) - 8, "epoch_ms_timestamps": len(epoch),
                "offset_timestamps": len(offset), "details_with_secrets": len(SECRETS) * 2,
                "hostile_details": len(HOSTILE), "hostile_targets": 2, "hostile_actors": 2},
            "notes": "lines = distinct_valid_events + invalid_json + missing_account + "
                     "zoneless_timestamp + exact_duplicate_lines. missing_account: two rows "
                     "without the key, one with null. Duplicates are byte-identical copies of "
                     "valid lines. Verdicts are not predicted here.",
        }
        with open(os.path.join(out, "expected_counts.json"), "w", encoding="utf-8") as fh:
            json.dump(expected, fh, indent=2)
            fh.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=47)
    ap.add_argument("--out", default=OUT, help="output folder (default: beside this script)")
    args = ap.parse_args()
    g = Gen(args.seed)
    g.humans()
    g.services()
    g.trouble()
    g.noise_tickets()
    g.write(args.out, args.seed)


if __name__ == "__main__":
    main()
