"""Identity and privilege changes in auth.log / secure (shadow-utils and pam_unix lines) -> the
actions the auditd connector uses for the same change.

| program | line | action |
|---|---|---|
| useradd | ``new user: name=bob, UID=..`` | ``user.add`` |
| useradd, groupadd | ``new group: name=devs, GID=..`` | ``group.add`` |
| userdel | ``delete user 'bob'`` | ``user.delete`` |
| userdel, groupdel | ``removed group 'bob' owned by ..``, ``group 'devs' removed`` | ``group.delete`` |
| useradd, usermod, userdel | ``add 'bob' to group 'sudo'``, ``delete 'bob' from group 'sudo'`` | ``group.modify`` |
| gpasswd | ``user bob added by root to group sudo``, ``members of group sudo set by root to ..`` | ``group.modify`` |
| groupmod | ``group changed in /etc/group (group devs/1002, ..)`` | ``group.modify`` |
| usermod | ``change user 'bob' shell ..``, ``lock user 'bob' password`` .. | ``user.modify`` |
| chage | ``changed password expiry for bob`` | ``user.modify`` |
| passwd, chpasswd | ``pam_unix(passwd:chauthtok): password changed for bob``, ``password for 'bob' changed by 'root'`` | ``user.password_change`` |

The changed account / group go to attrs ``changed_user`` / ``changed_group``. account = who made
the change when the line says (gpasswd ``by root``, passwd ``changed by 'root'``), else the changed
account (or group) with attrs.account_note saying so. The same change written again for
/etc/gshadow (``add 'bob' to shadow group``, ``group added to /etc/gshadow``) is ignored, so one
change is one row.
"""

from __future__ import annotations

import re

PROGRAMS = ("useradd", "userdel", "usermod", "groupadd", "groupdel", "groupmod", "gpasswd",
            "passwd", "chpasswd", "chage")

_NOTE = "the log does not say who made the change: account is the changed {}"

# (pattern, action, op); named groups: user, group, by
_RULES = [
    (r"new user: name=(?P<user>[^,\s]+)", "user.add", "add user"),
    (r"new group: name=(?P<group>[^,\s]+)", "group.add", "add group"),
    (r"delete user '(?P<user>[^']+)'", "user.delete", "delete user"),
    (r"removed group '(?P<group>[^']+)'", "group.delete", "delete group"),
    (r"group '(?P<group>[^']+)' removed(?: from /etc/group)?$", "group.delete", "delete group"),
    (r"add '(?P<user>[^']+)' to group '(?P<group>[^']+)'", "group.modify", "add member"),
    (r"delete '(?P<user>[^']+)' from group '(?P<group>[^']+)'", "group.modify", "remove member"),
    (r"user (?P<user>\S+) added by (?P<by>\S+) to group (?P<group>\S+)", "group.modify",
     "add member"),
    (r"user (?P<user>\S+) removed by (?P<by>\S+) from group (?P<group>\S+)", "group.modify",
     "remove member"),
    (r"members of group (?P<group>\S+) set by (?P<by>\S+) to", "group.modify", "set members"),
    (r"(?:administrators|password) of group (?P<group>\S+) (?:set|changed|removed) by (?P<by>\S+)",
     "group.modify", "group admin or password"),
    (r"group changed in /etc/group \(group (?P<group>[^/\s]+)", "group.modify", "change group"),
    (r"(?:change|lock|unlock) user (?:name )?'(?P<user>[^']+)'", "user.modify", "change user"),
    (r"changed password expiry for (?P<user>\S+)", "user.modify", "password expiry"),
    (r"pam_unix\([\w-]+:chauthtok\): password changed for (?P<user>\S+)",
     "user.password_change", "change password"),
    (r"password for '(?P<user>[^']+)' changed by '(?P<by>[^']+)'", "user.password_change",
     "change password"),
]
_COMPILED = [(re.compile(p), a, op) for p, a, op in _RULES]


def account_change(msg: str) -> dict | None:
    """The identity change a shadow-utils / pam_unix chauthtok message describes, or None."""
    for pattern, action, op in _COMPILED:
        m = pattern.match(msg)
        if not m:
            continue
        found = m.groupdict()
        user, group, by = found.get("user"), found.get("group"), found.get("by")
        subject = user or group
        attrs = {"changed_user": user, "changed_group": group, "op": op}
        if not by:
            attrs["account_note"] = _NOTE.format("user" if user else "group")
        return {"action": action, "account": by or subject, "actor": by, "detail": msg,
                "outcome": "success", "attrs": attrs}
    return None
