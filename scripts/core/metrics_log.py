"""The metrics log of every training run: ``RUN/metrics.jsonl``, one JSON record per line.

Each record has a ``step`` and a ``split`` (``"train"``, ``"val"``) and any scalar values.
Only rank 0 writes (the log is a no-op elsewhere); every numeric value is mirrored, as
``SPLIT/KEY``, to the run's trackers (``--report-to``, :mod:`reelm.core.trackers`), which the
trainers also log images to (``MetricsLog.trackers``). A resumed run first forgets the
records past the step it resumes from (:meth:`MetricsLog.truncate_after`), so steps logged
after the last checkpoint of a killed run are not logged twice; a line a kill cut short is
dropped then.

Follows: nanoGPT's train-loop logging; the JSONL logs of nanochat's report.
"""

from __future__ import annotations

import json
from pathlib import Path

from reelm.core.atomic import describe_os_error, write_text
from reelm.core.errors import ReelmError
from reelm.core.trackers import open_trackers

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """``RUN/metrics.jsonl`` (and the ``report_to`` trackers) on rank 0; a no-op elsewhere."""

    def __init__(self, run_dir: str | Path, *, enabled: bool, report_to: str | tuple[str, ...] | None = None,
                 config: dict | None = None):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.trackers = open_trackers(report_to, run_dir, enabled=enabled, config=config)  # checked on every rank

    def truncate_after(self, step: int) -> None:
        """Forget records past ``step`` (a resumed run logs them again)."""
        if self.enabled and self.path.is_file():
            kept = [line for line, record in _records(self.path) if record["step"] <= step]
            write_text(self.path, "".join(line + "\n" for line in kept))
        self.trackers.truncate_after(step)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")
        except OSError as exc:
            raise ReelmError(f"{self.path}: cannot write the metrics log ({describe_os_error(exc)}); the checkpoints "
                             "written so far are intact: fix it and resume with --resume") from None
        if self.trackers:
            split = record.get("split", "train")
            self.trackers.scalars({f"{split}/{key}": value for key, value in record.items()
                                   if key not in ("step", "split") and isinstance(value, (int, float))}, record["step"])

    def close(self) -> None:
        self.trackers.close()


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    return [record for _, record in _records(path)] if path.is_file() else []


def _records(path: Path) -> list[tuple[str, dict]]:
    """``(line, record)`` of every complete record; a line cut short by a killed run is dropped."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append((line, record))
    return records
