"""What every data module raises: :class:`DataError`, a one-line message that says what to do."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset problem the user can fix; the message is one line that says how."""


def one_line(e: BaseException) -> str:
    """An exception's text on one line (the CLI prints user errors as one line)."""
    return " ".join(str(e).split()) or type(e).__name__
