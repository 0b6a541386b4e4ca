"""Text from users made safe for a terminal or a shell: controls escaped, words quoted."""

from __future__ import annotations

import re
import shlex

# C0 controls but newline and tab, DEL, and C1 controls (ESC starts terminal escape sequences;
# CSI/OSC in C1 do as well on some terminals).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def literal(text: object) -> str:
    """``text`` as it should appear on a terminal: control characters shown as ``\\xNN``.

    Names come from users sharing a storage (studies, parameters, attributes); an escape
    sequence in one must not recolour, retitle or link the terminal of whoever lists them.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def shell_word(word: object) -> str:
    """``word`` quoted for a POSIX shell, to copy from a terminal: printable text with
    :func:`shlex.quote`; text holding a newline, a control or a bidirectional override (U+202E
    would show the line reordered) as bash's ``$'...'`` with each such character escaped."""
    text = str(word)
    if text.isprintable():
        return shlex.quote(text)

    def escape(ch: str) -> str:
        if ch in "\\'":
            return "\\" + ch
        if ch.isprintable():
            return ch
        if ord(ch) < 0x80:
            return f"\\x{ord(ch):02x}"
        return f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}"

    return "$'" + "".join(escape(ch) for ch in text) + "'"
