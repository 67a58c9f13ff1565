"""Untrusted text (an S3 key, a name from the bucket) made safe to print on one line.

Anyone who can write to the bucket can name an object `ESC]0;pwned BEL`: printed raw, that
retitles the operator's terminal, and colour, cursor and erase sequences pass the same way; a
line break forges a journal or report line. Every such name is passed through `printable`
before it reaches a terminal, a log line or a message.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 controls (ESC, BEL, CR, LF, NUL ...), DEL and the C1 controls (U+0080-U+009F: CSI U+009B
# starts a control sequence in terminals that take 8-bit controls, as ESC [ does).
_ESCAPES = {c: _NAMED.get(chr(c), f"\\x{c:02x}")
            for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def printable(text: str) -> str:
    """`text` with every control character escaped as Python writes it (`\\x1b`, `\\n`, `\\x9b`);
    everything else, backslashes included, unchanged."""
    return text.translate(_ESCAPES)
