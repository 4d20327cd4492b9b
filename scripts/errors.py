"""The one base class for errors a user can fix (bad file, bad flag, mismatched checkpoint).

The CLI prints these as a single ``reelm: error: ...`` line instead of a traceback;
messages name the file or flag and the reason.
"""


class ReelmError(ValueError):
    """An error caused by input the user can fix."""
