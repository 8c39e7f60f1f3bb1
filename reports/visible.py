"""Invisible characters made visible: bidi controls, zero-width and other format characters.

A log-derived string holding U+202E (right-to-left override) and friends can read differently from
what ran. Every HTML value (through the Jinja finalize hook) and every CSV cell shows such a
character as a marker like `<U+202E>` instead of the character itself.
"""

from __future__ import annotations

import re

# Unicode format characters (category Cf) that hide or reorder text, the line/paragraph separators,
# and C0/C1 controls other than TAB, LF and CR (those are whitespace a reader can see or a writer
# quotes).
INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    "\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]")


def _marker(match: re.Match) -> str:
    return f"<U+{ord(match.group()):04X}>"


def reveal(text: str) -> str:
    """`text` with each invisible or bidi control character replaced by `<U+XXXX>`."""
    return INVISIBLE.sub(_marker, text)
