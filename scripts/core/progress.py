"""Progress of a long step, shown to suit where it goes: every progress bar of reelm comes from here.

:func:`progress_bar` gives, when enabled and the stream (stderr by default) is a terminal, a
tqdm bar redrawn in place; when enabled and the stream is a file or a pipe (a log), a
:class:`LineProgress` that prints one plain line at each ``every_percent`` of the total (at
most one a ``min_seconds``, so a stage of a few seconds prints only its last line), and when
the last line is ``every_seconds`` old (the only cadence when the total is unknown), then a
last line when closed; when disabled, a bar that shows nothing. All three take the
calls the stages make: ``update``, ``set_postfix``, ``write``, ``close``, ``with``, ``n``, ``total``.

Follows: tqdm's interface; the plain-line progress of CI logs (pip, cargo) when not on a TTY.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

EVERY_PERCENT = 5
EVERY_SECONDS = 60.0
MIN_SECONDS = 1.0


def progress_bar(total: int | None = None, *, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0,
                 unit_scale: bool = False, file: TextIO | None = None, every_percent: float = EVERY_PERCENT,
                 every_seconds: float = EVERY_SECONDS, min_seconds: float = MIN_SECONDS):
    """A tqdm bar on a terminal, one line per ``every_percent`` (or ``every_seconds``) in a log, nothing when
    not ``enabled``; see the module docstring."""
    stream = file if file is not None else sys.stderr
    if not enabled:
        return QuietProgress(total, initial=initial)
    if is_terminal(stream):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale, file=stream,
                    dynamic_ncols=True)
    return LineProgress(total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale, file=stream,
                        every_percent=every_percent, every_seconds=every_seconds, min_seconds=min_seconds)


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class QuietProgress:
    """Counts and shows nothing (``write`` still prints, as tqdm's disabled bar does)."""

    def __init__(self, total: int | None = None, *, initial: int = 0):
        self.total, self.n, self.postfix = total, initial, ""

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in {**(ordered_dict or {}), **values}.items())

    def write(self, text: str, file: TextIO | None = None) -> None:
        print(text, file=file if file is not None else sys.stdout, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LineProgress(QuietProgress):
    """One plain line per ``every_percent`` of the total (``min_seconds`` apart at least) or per
    ``every_seconds``, and one when closed."""

    def __init__(self, total: int | None = None, *, desc: str, unit: str = "it", initial: int = 0,
                 unit_scale: bool = False, file: TextIO | None = None, every_percent: float = EVERY_PERCENT,
                 every_seconds: float = EVERY_SECONDS, min_seconds: float = MIN_SECONDS):
        super().__init__(total, initial=initial)
        self.desc, self.unit, self.unit_scale, self.initial = desc, unit, unit_scale, initial
        self.file = file if file is not None else sys.stderr
        self.every_percent, self.every_seconds, self.min_seconds = every_percent, every_seconds, min_seconds
        self.started = self.last_line = time.monotonic()
        self.shown = self._mark()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        mark, quiet = self._mark(), now - self.last_line
        if mark > self.shown and quiet >= self.min_seconds and self.n < self.total:  # the end's line: close()'s
            self.shown = mark
            self._line(now)
        elif quiet >= self.every_seconds:
            self._line(now)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line(time.monotonic(), done=True)

    def _mark(self) -> int:
        """How many ``every_percent`` steps of the total are done (0 when the total is unknown)."""
        if not self.total:
            return 0
        return int(100 * self.n / self.total // self.every_percent)

    def _line(self, now: float, done: bool = False) -> None:
        from tqdm import tqdm

        self.last_line = now
        elapsed = now - self.started
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else None
        count = self._count(self.n) + (f"/{self._count(self.total)}" if self.total else "")
        parts = [f"{count} {self.unit}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")
                 + f" in {tqdm.format_interval(elapsed)}"]
        if rate:
            parts.append(f"{self._rate(rate)} {self.unit}/s")
            if self.total and not done and self.n < self.total:
                parts.append(f"~{tqdm.format_interval((self.total - self.n) / rate)} left")
        postfix = f"; {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {'done, ' if done else ''}{', '.join(parts)}{postfix}", file=self.file, flush=True)

    def _count(self, value: float) -> str:
        if self.unit_scale:
            from tqdm import tqdm

            return tqdm.format_sizeof(value)
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"

    def _rate(self, value: float) -> str:
        if self.unit_scale:
            from tqdm import tqdm

            return tqdm.format_sizeof(value)
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"
