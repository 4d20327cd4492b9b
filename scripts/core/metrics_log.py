"""The metrics log of every training run: ``RUN/metrics.jsonl``, one JSON record per line.

Each record has a ``step`` and a ``split`` (``"train"``, ``"val"``) and any scalar values.
Only rank 0 writes (the log is a no-op elsewhere); TensorBoard scalars are mirrored when
asked. A resumed run first forgets the records past the step it resumes from
(:meth:`MetricsLog.truncate_after`), so steps logged after the last checkpoint of a killed
run are not logged twice; a line a kill cut short is dropped then.

Follows: nanoGPT's train-loop logging; the JSONL logs of nanochat's report.
"""

from __future__ import annotations

import json
from pathlib import Path

from reelm.core.atomic import describe_os_error, write_text
from reelm.core.errors import ReelmError

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """``RUN/metrics.jsonl`` (and TensorBoard scalars) on rank 0; a no-op elsewhere."""

    def __init__(self, run_dir: str | Path, *, enabled: bool, tensorboard: bool = False):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.writer = None
        if tensorboard:  # checked on every rank, so all of them stop together
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ReelmError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
            if enabled:
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Forget records past ``step`` (a resumed run logs them again)."""
        if self.enabled and self.path.is_file():
            kept = [line for line, record in _records(self.path) if record["step"] <= step]
            write_text(self.path, "".join(line + "\n" for line in kept))

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
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "split") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{record.get('split', 'train')}/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
