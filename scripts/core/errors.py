"""The one base class for errors a user can fix (bad file, bad flag, mismatched checkpoint), and warnings.

The CLI prints these as a single ``reelm: error: ...`` line instead of a traceback;
messages name the file or flag, the reason, and what to do next. :func:`warn` prints the
one-line ``reelm: warning: ...`` of something reelm worked around (a damaged checkpoint
skipped).
"""

import sys


class ReelmError(ValueError):
    """An error caused by input the user can fix."""


def one_line_reason(exc: BaseException) -> str:
    """The first line of a library exception's message (its type name when it has none), for a one-line error."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def warn(message: str) -> None:
    """One ``reelm: warning: ...`` line on stderr."""
    print(f"reelm: warning: {' '.join(message.split())}", file=sys.stderr, flush=True)
