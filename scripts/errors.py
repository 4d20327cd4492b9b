"""The one base class for errors a user can fix (bad file, bad flag, mismatched checkpoint).

The CLI prints these as a single ``reelm: error: ...`` line instead of a traceback;
messages name the file or flag and the reason.
"""


class ReelmError(ValueError):
    """An error caused by input the user can fix."""


def one_line_reason(exc: BaseException) -> str:
    """The first line of a library exception's message (its type name when it has none), for a one-line error."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
